import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dpoTrainerReport, gradedTrainerReport, movedDpoReport, movedRewardReport, rewardTrainerReport, trainerReport } from '../../../test/support/trainer-reports';
import { runJudgeOnEvalJob } from '../../../test/support/judged-report';
import { gateFailures, JudgeResult, parseReport, readEvalReport } from './read-eval-report';

// The eval.json the real trainer wrote, without and with a forgetting probe.
const REPORT = trainerReport(false);
const PROBE_REPORT = trainerReport(true);
const RATIO = REPORT.tuned.eval_loss / REPORT.base.eval_loss;
// The eval.json of a real DPO run (LoRA), with its preference figures on 7 held-out pairs.
const DPO_REPORT = dpoTrainerReport();
// The thresholds the plan sets for a dpo run by default (RunRequestSchema).
const DPO_THRESHOLDS = { maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 };
const round = (n: number) => Number(n.toPrecision(4));

function s3With(key: string, bytes: Buffer) {
  return {
    send: (async (command: any) => {
      if (`${command.input.Bucket}/${command.input.Key}` !== key) throw Object.assign(new Error('no'), { name: 'NoSuchKey' });
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
}

describe('ReadEvalReport handler', () => {
  test('reads eval.json from an object URI and returns the gate numbers', async () => {
    const result = await readEvalReport({ reportUri: 's3://b/eval-reports/r/job/output/model/eval.json', thresholds: { maxEvalLossRatio: 1 } }, s3With('b/eval-reports/r/job/output/model/eval.json', Buffer.from(JSON.stringify(REPORT))));
    expect(result).toMatchObject({ evalLossRatio: RATIO, forgettingIncrease: null, examples: REPORT.examples, passed: true, failures: [], reportUri: 's3://b/eval-reports/r/job/output/model/eval.json' });
    expect(result.summary).toBe(`passed | eval_loss_ratio=${Number(RATIO.toPrecision(4))} (max 1); forgetting_increase=none (no probe); eval_loss ${round(REPORT.base.eval_loss)} -> ${round(REPORT.tuned.eval_loss)} on 4 examples`);
  });

  test('recomputes the forgetting increase from the probe losses and gates on it', () => {
    const result = parseReport(JSON.stringify(PROBE_REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.01 }, true);
    expect(result.forgettingIncrease).toBeCloseTo(PROBE_REPORT.tuned.probe_loss - PROBE_REPORT.base.probe_loss, 12);
    expect(result.passed).toBe(true);
    const increase = Number((PROBE_REPORT.tuned.probe_loss - PROBE_REPORT.base.probe_loss).toPrecision(4));
    const below = Number((increase - 0.01).toPrecision(4)); // a maximum just under the measured increase
    const tighter = parseReport(JSON.stringify(PROBE_REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: below }, true);
    expect(tighter).toMatchObject({ passed: false, failures: [`forgetting_increase ${increase} is above the maximum ${below}`] });
  });

  test('fails closed when the run planned a probe and the report has no forgetting figure', () => {
    const result = parseReport(JSON.stringify(REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, true);
    expect(result).toMatchObject({ passed: false, forgettingIncrease: null });
    expect(result.summary).toMatch(/^rejected: forgetting_increase was not measured although the run planned a probe \(maximum 0\.1\) \| .*forgetting_increase=missing/);
    // without a planned probe, the same report passes
    expect(parseReport(JSON.stringify(REPORT), 'x', { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, false).passed).toBe(true);
  });

  test('a reward run is gated on its pairwise accuracy from the real reward eval.json (beta null: the reward is the score)', () => {
    const report = rewardTrainerReport();
    const result = parseReport(JSON.stringify(report), 'x', DPO_THRESHOLDS);
    expect(result).toMatchObject({ passed: true, failures: [], preferenceAccuracy: report.preference.preferred / report.preference.pairs, preference: { beta: null, pairs: report.preference.pairs } });
    // its loss is the pairwise loss against chance (ln 2), the ratio recomputed from the two
    expect(result.evalLossRatio).toBeCloseTo(report.tuned.eval_loss / Math.log(2), 12);
    expect(result.summary).toMatch(/^passed \| preference_accuracy=1 \(8\/8 pairs; min 0\.5\); reward_margin=/);
    const worse = parseReport(JSON.stringify(movedRewardReport(3)), 'x', DPO_THRESHOLDS);
    expect(worse).toMatchObject({ passed: false, failures: ['preference_accuracy 0.375 is below the minimum 0.5'] });
    // beta is a number or null, nothing else
    expect(() => parseReport(JSON.stringify({ ...report, preference: { ...report.preference, beta: 'none' } }), 'x', DPO_THRESHOLDS)).toThrow(/preference\.beta/);
  });

  test('the gate never passes NaN and checks only the thresholds that are set', () => {
    expect(gateFailures({ evalLossRatio: NaN, forgettingIncrease: null }, { maxEvalLossRatio: 1 }, false)).toHaveLength(1);
    expect(gateFailures({ evalLossRatio: 1, forgettingIncrease: null, preferenceAccuracy: NaN }, { minPreferenceAccuracy: 0.5 }, false)).toHaveLength(1);
    expect(gateFailures({ evalLossRatio: 5, forgettingIncrease: null, preferenceAccuracy: 0 }, { maxForgettingIncrease: 0.1 }, false)).toEqual([]);
    expect(gateFailures({ evalLossRatio: 5, forgettingIncrease: 3 }, {}, true)).toEqual([]);
    expect(gateFailures({ evalLossRatio: 1, forgettingIncrease: 0.1 }, { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, true)).toEqual([]);
  });

  test.each([
    ['a ratio that disagrees with the losses', { ...PROBE_REPORT, eval_loss_ratio: 0.8 }, /eval_loss_ratio 0\.8 disagrees with the losses it summarises/],
    ['a forgetting increase that disagrees with the probe losses', { ...PROBE_REPORT, forgetting_increase: -0.5 }, /forgetting_increase -0\.5 disagrees with the probe losses/],
    ['a forgetting increase without probe losses', { ...REPORT, forgetting_increase: 0.01 }, /forgetting_increase 0\.01 disagrees/],
    ['no forgetting increase beside probe losses', { ...PROBE_REPORT, forgetting_increase: null }, /forgetting_increase null disagrees/],
    ['a zero base loss', { ...REPORT, base: { ...REPORT.base, eval_loss: 0 } }, /base\.eval_loss must be above 0/],
  ])('refuses %s (EvalReportInvalid): the gate does not trust a figure its losses contradict', (_, report, message) => {
    expect(() => parseReport(JSON.stringify(report), 'x')).toThrow(message);
  });

  test('a DPO run is gated on how it ranks held-out pairs (the real DPO report), not on its chosen responses\' loss', () => {
    const { pairs, preferred, reward_margin: margin } = DPO_REPORT.preference;
    const result = parseReport(JSON.stringify(DPO_REPORT), 'x', DPO_THRESHOLDS, false);
    expect(result).toMatchObject({ passed: true, failures: [], preferenceAccuracy: preferred / pairs, preference: DPO_REPORT.preference });
    expect(result.summary).toBe(
      `passed | preference_accuracy=${round(preferred / pairs)} (${preferred}/${pairs} pairs; min 0.5); reward_margin=${round(margin)}; ` +
        `eval_loss_ratio=${round(DPO_REPORT.eval_loss_ratio)} (max none); forgetting_increase=none (no probe); ` +
        `eval_loss ${round(DPO_REPORT.base.eval_loss)} -> ${round(DPO_REPORT.tuned.eval_loss)} on ${DPO_REPORT.examples} examples`,
    );
    // DPO may raise the loss of the chosen responses while it learns to rank them first: that passes
    expect(parseReport(JSON.stringify(movedDpoReport({ evalLossRatio: 1.3 })), 'x', DPO_THRESHOLDS).passed).toBe(true);
    // ... unless the run also asked for a maximum eval loss ratio
    expect(parseReport(JSON.stringify(movedDpoReport({ evalLossRatio: 1.3 })), 'x', { ...DPO_THRESHOLDS, maxEvalLossRatio: 1 }).failures).toEqual([
      'eval_loss_ratio 1.3 is above the maximum 1',
    ]);
  });

  test('rejects a DPO model that ranks fewer held-out pairs right than the minimum', () => {
    const result = parseReport(JSON.stringify(movedDpoReport({ preferred: 3 })), 'x', DPO_THRESHOLDS);
    expect(result).toMatchObject({ passed: false, preferenceAccuracy: 3 / 7, failures: ['preference_accuracy 0.4286 is below the minimum 0.5'] });
    expect(result.summary).toMatch(/^rejected: preference_accuracy 0\.4286 is below the minimum 0\.5 \| preference_accuracy=0\.4286 \(3\/7 pairs; min 0\.5\)/);
    // an unmoved model: every reward 0, every pair a tie, none preferred
    expect(parseReport(JSON.stringify(movedDpoReport({ preferred: 0 })), 'x', DPO_THRESHOLDS).passed).toBe(false);
  });

  test('fails closed when a DPO run\'s report has no preference figures (an evaluation that predates them)', () => {
    const result = parseReport(JSON.stringify(REPORT), 'x', DPO_THRESHOLDS, false);
    expect(result).toMatchObject({ passed: false, preferenceAccuracy: null, preference: null });
    expect(result.failures).toEqual([
      'preference_accuracy was not measured (minimum 0.5): the report has no preference figures, which the evaluation writes for DPO and reward runs',
    ]);
    expect(result.summary).toMatch(/ \| preference_accuracy=missing \(min 0\.5\); eval_loss_ratio=/);
  });

  test.each([
    ['an accuracy that disagrees with its pair counts', { accuracy: 0.9 }, /preference\.accuracy 0\.9 disagrees with the pairs it summarises \(\d+ preferred of 7 = /],
    ['a margin that disagrees with its rewards', { reward_margin: 3 }, /preference\.reward_margin 3 disagrees with the rewards it summarises/],
    ['more preferred pairs than pairs', { preferred: 8, accuracy: 8 / 7 }, /preference\.preferred must be a whole number from 0 to pairs \(7\), got 8/],
    ['no pairs', { pairs: 0 }, /preference\.pairs must be a positive integer, got 0/],
    ['a non-finite reward', { chosen_reward: 'Infinity' }, /preference\.chosen_reward must be a finite number/],
  ])('refuses a DPO report with %s (EvalReportInvalid)', (_, change, message) => {
    const report = { ...DPO_REPORT, preference: { ...DPO_REPORT.preference, ...change } };
    expect(() => parseReport(JSON.stringify(report), 'x', DPO_THRESHOLDS)).toThrow(message);
  });

  test.each(['gnu', 'pax', 'ustar'])('reads eval.json out of a model.tar.gz (%s format)', async (format) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eval-tar-'));
    fs.writeFileSync(path.join(dir, 'other.bin'), Buffer.alloc(1500, 7));
    fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify(REPORT));
    execFileSync('tar', [`--format=${format}`, '-czf', path.join(dir, 'model.tar.gz'), '-C', dir, './other.bin', './eval.json']);
    const bytes = fs.readFileSync(path.join(dir, 'model.tar.gz'));
    const result = await readEvalReport({ reportUri: 's3://b/k/model.tar.gz' }, s3With('b/k/model.tar.gz', bytes));
    expect(result.evalLossRatio).toBe(RATIO);
  });

  test('reads the real report with generations and benchmark accuracy (fields the gate does not read yet) as version 1', () => {
    // written by training-images/trainer/tests/test_evaluate.py (a benchmarks channel of two files, generation on)
    const report = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'contracts', 'eval-report-benchmarks.json'), 'utf8'));
    expect(report.schema_version).toBe(1);
    expect(report.generation).toMatchObject({ file: 'generations.jsonl', items: 4, greedy: true });
    expect(report.benchmarks.map((b: any) => b.name)).toEqual(['translate-a', 'translate-b']);
    const result = parseReport(JSON.stringify(report), 'x', { maxEvalLossRatio: 1 }, false);
    expect(result).toMatchObject({ passed: true, failures: [], examples: 4, evalLossRatio: report.tuned.eval_loss / report.base.eval_loss });
  });

  test('fails as EvalReportInvalid when the report is missing', async () => {
    await expect(readEvalReport({ reportUri: 's3://b/missing/' }, s3With('b/x', Buffer.from('')))).rejects.toMatchObject({ name: 'EvalReportInvalid', message: expect.stringContaining('s3://b/missing/eval.json does not exist') });
  });

  test.each([
    [{ ...REPORT, schema_version: 2 }, /schema_version must be 1, got 2/],
    [{ ...REPORT, eval_loss_ratio: 'NaN' }, /eval_loss_ratio must be a finite number/],
    [{ ...REPORT, examples: 0 }, /examples must be a positive integer/],
  ])('fails as EvalReportInvalid on a report that breaks the contract (%#)', (report, message) => {
    expect(() => parseReport(JSON.stringify(report), 'x')).toThrow(message);
  });

  describe('the gate on what the evaluation measured: graders, the judge, benchmarks', () => {
    // The real reports: exact and fuzzy graders with two benchmarks; and graders that errored on every row or did not run.
    const GRADED = gradedTrainerReport();
    const ERRORS = gradedTrainerReport(true);
    const BENCHMARKS = ['translate-a', 'translate-b'];
    const fuzzy = GRADED.graders.tuned.fuzzy.mean as number;
    const parse = (report: any, thresholds: object, planned: { benchmarks?: string[]; judge?: JudgeResult | null } = {}) =>
      parseReport(JSON.stringify(report), 'x', { maxEvalLossRatio: 1, ...thresholds }, false, { benchmarks: planned.benchmarks ?? [], judge: planned.judge ?? null });
    // A judge result as the JudgeAnswers state writes it ($.judge): winRate = wins / (wins + ties + losses).
    const judge = (wins: number, ties: number, losses: number): JudgeResult => ({
      reportUri: 's3://b/eval-reports/r/judge/judge.json',
      items: wins + ties + losses,
      wins,
      ties,
      losses,
      winRate: wins + ties + losses ? wins / (wins + ties + losses) : 0,
    });

    test('a grader threshold passes at the tuned mean and fails just above it, the check named with its value and threshold', () => {
      expect(fuzzy).toBeGreaterThan(0); // the fixture's figure, not one the test chose
      const at = parse(GRADED, { minGraderMean: { fuzzy: round(fuzzy) - 0.0001 } });
      expect(at).toMatchObject({ passed: true, failures: [] });
      expect(at.graders!.tuned.fuzzy).toMatchObject({ mean: fuzzy, graded: 4, error_count: 0 });
      const min = round(fuzzy + 0.01);
      const above = parse(GRADED, { minGraderMean: { fuzzy: min, exact: 0 } });
      expect(above.failures).toEqual([`grader fuzzy mean ${round(fuzzy)} is below the minimum ${min}`]);
      expect(above.summary).toContain(`grader fuzzy=${round(fuzzy)} (base ${round(GRADED.graders.base.fuzzy.mean)}; min ${min})`);
      expect(above.summary).toContain('grader exact=0 (base 0; min 0)');
      expect(above.summary.startsWith(`rejected: grader fuzzy mean ${round(fuzzy)} is below the minimum ${min} | `)).toBe(true);
    });

    test('without thresholds the summary still shows each grader and benchmark the report measured', () => {
      const result = parse(GRADED, {}, { benchmarks: BENCHMARKS });
      expect(result.passed).toBe(true);
      expect(result.summary).toContain(`grader fuzzy=${round(fuzzy)} (base ${round(GRADED.graders.base.fuzzy.mean)}; min none)`);
      expect(result.summary).toContain(`benchmark translate-b drop=${round(GRADED.benchmarks[1].drop)} (accuracy ${round(GRADED.benchmarks[1].base_accuracy)} -> ${round(GRADED.benchmarks[1].tuned_accuracy)} on 6 items; max none)`);
    });

    test.each([
      ['errored on every row', 'label', /^grader label was not measured \(minimum 0\): it errored on every row \(3 of them; row 0: .*label/],
      ['did not run (an LLM judge grader the job cannot run)', 'rubric', /^grader rubric was not measured \(minimum 0\): the evaluation could not run it \(.+\)$/],
      ['is missing from the report', 'absent', /^grader absent was not measured \(minimum 0\): the report has no result for it \(graders reported: exact, label, rubric\)$/],
    ])('a grader that %s fails the gate closed, even at a minimum of 0', (_, name, message) => {
      const result = parse(ERRORS, { minGraderMean: { [name]: 0, exact: 0 } });
      expect(result.passed).toBe(false);
      expect(result.failures).toHaveLength(1);
      expect(result.failures[0]).toMatch(message);
      expect(result.summary).toContain(`grader ${name}=missing (min 0)`);
    });

    test('a grader threshold fails closed on a report without graders', () => {
      const result = parse(trainerReport(false), { minGraderMean: { exact: 0.5 } });
      expect(result.failures).toEqual(['grader exact was not measured (minimum 0.5): the report has no grader results']);
    });

    test('the benchmark drop: the real report passes at the largest drop it measured and fails below it', () => {
      const largest = Math.max(...GRADED.benchmarks.map((b: any) => b.drop));
      expect(parse(GRADED, { maxBenchmarkDrop: largest }, { benchmarks: BENCHMARKS })).toMatchObject({ passed: true, failures: [] });
      // the same report with translate-a's tuned model one item (of 6) worse: a drop of 1/6 the trainer could have written
      const worse = JSON.parse(JSON.stringify(GRADED));
      const a = worse.benchmarks[0];
      a.tuned_accuracy = a.base_accuracy - 1 / 6;
      a.drop = a.base_accuracy - a.tuned_accuracy;
      const result = parse(worse, { maxBenchmarkDrop: 0.02 }, { benchmarks: BENCHMARKS });
      expect(result.failures).toEqual([`benchmark translate-a drop ${round(a.drop)} is above the maximum 0.02 (accuracy ${round(a.base_accuracy)} -> ${round(a.tuned_accuracy)})`]);
      expect(result.summary).toContain(`benchmark translate-a drop=${round(a.drop)} (accuracy ${round(a.base_accuracy)} -> ${round(a.tuned_accuracy)} on 6 items; max 0.02)`);
    });

    test('a planned benchmark missing from eval.json, or a report without benchmarks, fails the gate closed', () => {
      const missing = parse(GRADED, { maxBenchmarkDrop: 0.5 }, { benchmarks: [...BENCHMARKS, 'mmlu'] });
      expect(missing.failures).toEqual(['benchmark mmlu was not measured (maximum drop 0.5): eval.json has no result for it']);
      expect(missing.summary).toContain('benchmark mmlu drop=missing (max 0.5)');
      const none = parse(trainerReport(false), { maxBenchmarkDrop: 0.5 }, { benchmarks: ['mmlu'] });
      expect(none.failures).toEqual(['benchmark mmlu was not measured (maximum drop 0.5): eval.json has no result for it']);
      expect(parse(trainerReport(false), { maxBenchmarkDrop: 0.5 }).failures).toEqual(['benchmark drop was not measured (maximum 0.5): the report has no benchmarks and the run planned none']);
    });

    test('refuses a benchmark drop that disagrees with its accuracies (EvalReportInvalid)', () => {
      const report = JSON.parse(JSON.stringify(GRADED));
      report.benchmarks[1].drop = 0;
      expect(() => parse(report, {})).toThrow(/benchmarks\[1\]\.drop 0 disagrees with the accuracies it summarises/);
    });

    test('the judge win rate passes at the minimum, fails under it, and fails closed without a judge result or a verdict', () => {
      expect(parse(GRADED, { minJudgeWinRate: 0.6 }, { judge: judge(6, 2, 2) })).toMatchObject({ passed: true, failures: [] });
      const under = parse(GRADED, { minJudgeWinRate: 0.6 }, { judge: judge(5, 3, 2) });
      expect(under.failures).toEqual(['judge_win_rate 0.5 is below the minimum 0.6']);
      expect(under.summary).toContain('judge_win_rate=0.5 (5 wins, 3 ties, 2 losses of 10 items; min 0.6)');
      const absent = parse(GRADED, { minJudgeWinRate: 0.6 });
      expect(absent.failures).toEqual(['judge_win_rate was not measured (minimum 0.6): the pipeline passed no judge result']);
      expect(absent.summary).toContain('judge_win_rate=missing (min 0.6)');
      expect(parse(GRADED, { minJudgeWinRate: 0 }, { judge: judge(0, 0, 0) }).failures).toEqual([
        'judge_win_rate was not measured (minimum 0): the judge gave no verdict (0 wins, ties or losses of 0 items)',
      ]);
      expect(() => parse(GRADED, {}, { judge: { ...judge(5, 3, 2), winRate: 0.9 } })).toThrow(/winRate 0\.9 disagrees with the verdicts \(5 wins of 10 = 0\.5\)/);
    });

    test('gates on the result the real JudgeAnswers handler leaves at $.judge (a scripted judge on the eval job\'s real generations)', async () => {
      const { progress } = await runJudgeOnEvalJob();
      const result = progress.result!;
      expect(result.wins + result.ties + result.losses).toBe(result.items);
      expect(result.items).toBeGreaterThan(0);
      expect(parse(GRADED, { minJudgeWinRate: result.winRate }, { judge: result })).toMatchObject({ passed: true, failures: [] });
      const above = Math.min(1, round(result.winRate + 0.01));
      expect(parse(GRADED, { minJudgeWinRate: above }, { judge: result }).failures).toEqual([`judge_win_rate ${round(result.winRate)} is below the minimum ${above}`]);
    });

    test('the handler gates on the planned benchmarks and the judge result of its event', async () => {
      const key = 'b/eval-reports/r/job/output/model/eval.json';
      const result = await readEvalReport(
        { reportUri: `s3://${key}`, thresholds: { maxEvalLossRatio: 1, maxBenchmarkDrop: 0.5, minJudgeWinRate: 0.5 }, benchmarks: ['translate-a', 'missing-one'], judge: judge(1, 0, 3) },
        s3With(key, Buffer.from(JSON.stringify(GRADED))),
      );
      expect(result.failures).toEqual([
        'judge_win_rate 0.25 is below the minimum 0.5',
        'benchmark missing-one was not measured (maximum drop 0.5): eval.json has no result for it',
      ]);
      expect(result.judge).toEqual(judge(1, 0, 3));
    });
  });
});
