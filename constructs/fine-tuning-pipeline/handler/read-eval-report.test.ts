import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dpoTrainerReport, movedDpoReport, trainerReport } from '../../../test/support/trainer-reports';
import { gateFailures, parseReport, readEvalReport } from './read-eval-report';

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
      'preference_accuracy was not measured (minimum 0.5): the report has no preference figures, which the evaluation writes for DPO runs',
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
});
