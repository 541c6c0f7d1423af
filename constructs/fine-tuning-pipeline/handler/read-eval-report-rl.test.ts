import * as fs from 'node:fs';
import * as path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { RunPlan } from '../../../lib/run-request';
import { rlTrainerReport } from '../../../test/support/trainer-reports';
import { PlanRunEnvironment, planRunAndWriteGraders } from './plan-run';
import { readEvalReport, ReadEvalReportEvent } from './read-eval-report';

/**
 * The eval gate applied to online RL runs like any other: a grpo and an rloo request go through the real PlanRun (its
 * thresholds, defaults applied, and the evaluation job it plans), the evaluation job each plan describes runs on the
 * trainer's toy adapter (training-images/trainer/tests/test_grpo.py and test_rloo.py read the plans from
 * test/fixtures/contracts/rl-eval-jobs.json, which this file writes, and commit the eval.json they get as
 * eval-report-grpo.json and eval-report-rloo.json), and ReadEvalReport gates that eval.json with the plan's
 * thresholds, as the state machine passes them.
 */
const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'contracts', 'rl-eval-jobs.json');

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: false,
  deployStage: false,
};

/** test_grpo.py CONTAINS_A: the toy task's verifiable reward, and the figure its gate reads. */
const HAS_A = { type: 'regex', name: 'has_a', input: '{{ sample.output_text }}', pattern: 'a' };

/** What both toy runs share, in recipe fields (test_grpo.py GRPO_FAST and toy_run, test_rloo.py RLOO_FAST and rlhf_run). */
const TOY_RECIPE = { batchSize: 16, gradientAccumulation: 1, learningRate: 1e-2, lrScheduler: 'constant', warmupRatio: 0, maxSteps: 30, loraR: 8, loraAlpha: 16, loraDropout: 0 };
const DATA = { dataset: { name: 'translate', sha256: 'd'.repeat(64) }, baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/' };
const GATED_ON_HAS_A = { minGraderMean: { has_a: 0.7 } };

/**
 * The requests of the toy runs: grpo rewarded by has_a, rloo against a reward run's model (its model data under
 * artifacts/), both evaluated by has_a and gated on its mean, their answers evaluated at the length they trained on
 * (evaluation.maxNewTokens = the completion length).
 */
const REQUESTS = {
  grpo: (thresholds: Record<string, unknown> = GATED_ON_HAS_A, graders: unknown[] = [HAS_A]) => ({
    ...DATA,
    recipe: { method: 'grpo', grpoNumGenerations: 8, grpoMaxCompletionLength: 4, grpoTemperature: 1, grpoBeta: 0.04, grpoLengthGuard: 'none', ...TOY_RECIPE },
    graders,
    evaluation: { maxNewTokens: 4 },
    thresholds,
  }),
  rloo: (thresholds: Record<string, unknown> = GATED_ON_HAS_A, graders: unknown[] = [HAS_A]) => ({
    ...DATA,
    recipe: { method: 'rloo', rlooNumGenerations: 8, rlooMaxCompletionLength: 4, rlooTemperature: 1, rlooBeta: 0.1, ...TOY_RECIPE },
    rewardModel: 's3://data-bucket/artifacts/translate-reward-0123456789ab/tuneyard-translate-reward-0123456789ab-train/output/model/',
    ...(graders.length ? { graders } : {}),
    evaluation: { maxNewTokens: 4 },
    thresholds,
  }),
};

/** What the PlanRun handler leaves at `$.plan`, and the graders.json it writes (the evaluation job's graders channel). */
async function plan(request: unknown): Promise<RunPlan & { gradersBody: string | null }> {
  const written: string[] = [];
  const s3 = {
    send: async (command: PutObjectCommand) => {
      if (!(command instanceof PutObjectCommand)) throw new Error(`unexpected S3 command ${(command as object).constructor.name}`);
      written.push(String(command.input.Body));
    },
  };
  const { plan: planned } = await planRunAndWriteGraders({ request }, ENV, s3);
  expect(written).toHaveLength(planned.gradersFile === null ? 0 : 1);
  return { ...planned, gradersBody: written[0] ?? null };
}

/** The ReadEvalReport state's input, built from the plan as the state machine builds it (fine-tuning-pipeline.ts). */
function gateEvent(planned: RunPlan): ReadEvalReportEvent {
  return { reportUri: planned.evalReport.s3Uri, thresholds: planned.thresholds, forgettingProbe: planned.forgettingProbe, benchmarks: planned.benchmarks, judge: null };
}

/** An S3 that holds one object: the report at the plan's eval report key. */
function s3Holding(planned: RunPlan, report: unknown) {
  const bytes = Buffer.from(JSON.stringify(report));
  return {
    send: (async (command: any) => {
      if (command.input.Bucket !== planned.evalReport.bucket || command.input.Key !== planned.evalReport.key) throw Object.assign(new Error('no'), { name: 'NoSuchKey' });
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
}

async function gate(request: unknown, report: unknown) {
  const planned = await plan(request);
  return readEvalReport(gateEvent(planned), s3Holding(planned, report));
}

const round = (n: number) => Number(n.toPrecision(4));

describe('PlanRun plans the evaluation jobs of the grpo and rloo runs that the trainer tests run', () => {
  test('rl-eval-jobs.json is what the real PlanRun plans (TUNEYARD_UPDATE_FIXTURES=1 rewrites it; the trainer tests read it)', async () => {
    const cases = [];
    for (const request of [REQUESTS.grpo(), REQUESTS.rloo()]) {
      const planned = await plan(request);
      cases.push({
        request,
        evaluationHyperParameters: planned.evaluationHyperParameters,
        evaluationChannels: planned.evaluationInputDataConfig.map((c) => c.ChannelName),
        // the bytes PlanRun wrote to graders.json, the evaluation job's graders channel
        gradersFile: planned.gradersBody,
        thresholds: planned.thresholds,
      });
    }
    const written = {
      description:
        'The evaluation jobs PlanRun plans for online RL requests (constructs/fine-tuning-pipeline/handler/read-eval-report-rl.test.ts writes this file; ' +
        'TUNEYARD_UPDATE_FIXTURES=1 rewrites it). training-images/trainer/tests/test_grpo.py and test_rloo.py run the job on their toy adapters and ' +
        'commit the eval.json they get (eval-report-<method>.json), which the same TypeScript test gates with the planned thresholds.',
      cases,
    };
    if (process.env.TUNEYARD_UPDATE_FIXTURES === '1') fs.writeFileSync(FIXTURE, `${JSON.stringify(written, null, 2)}\n`);
    expect(JSON.parse(fs.readFileSync(FIXTURE, 'utf8'))).toEqual(written);
  });

  test.each(['grpo', 'rloo'] as const)('the gate of a %s run is the gain of its reward (and, when set, the graders\' means): its eval loss ratio is not checked', async (method) => {
    expect((await plan(REQUESTS[method]())).thresholds).toEqual({ maxForgettingIncrease: 0.1, minGraderMean: { has_a: 0.7 }, minRewardGain: 0 });
    expect((await plan(REQUESTS[method]({}))).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 0 });
  });

  test('the evaluation job of an rloo run gets its reward model (the training job\'s reward_model channel), of a grpo run the reward weights', async () => {
    const rloo = await plan(REQUESTS.rloo());
    const train = rloo.inputDataConfig.find((c) => c.ChannelName === 'reward_model');
    expect(rloo.evaluationInputDataConfig.find((c) => c.ChannelName === 'reward_model')).toEqual(train);
    expect(train!.DataSource.S3DataSource.S3Uri).toBe(REQUESTS.rloo().rewardModel);
    const weighted = await plan({ ...REQUESTS.grpo(), recipe: { ...REQUESTS.grpo().recipe, rewardWeights: { has_a: 2 } } });
    expect(weighted.evaluationHyperParameters).toMatchObject({ method: 'grpo', reward_weights: '{"has_a":2}' });
    expect(weighted.evaluationHyperParameters.reward_weights).toBe(weighted.hyperParameters.reward_weights);
    expect(weighted.evaluationInputDataConfig.map((c) => c.ChannelName)).not.toContain('reward_model');
  });
});

// The eval.json of each toy adapter, from the evaluation job planned for its request: GRPO rewarded by has_a
// (test_grpo.py), RLOO against a reward model trained on pairs that separate texts with an "a" from texts without
// (test_rloo.py), has_a evaluating it.
describe.each([
  ['grpo', 'the GRPO adapter'],
  ['rloo', 'the RLOO adapter'],
] as const)('the eval gate on %s: the real plan against the eval.json the real trainer wrote for %s', (method, _adapter) => {
  const REPORT = rlTrainerReport(method);
  const request = REQUESTS[method];
  const tuned = REPORT.graders.tuned.has_a.mean as number;
  const base = REPORT.graders.base.has_a.mean as number;
  const reward = REPORT.reward as { base: { mean: number }; tuned: { mean: number }; gain: number; rows: number };
  // the smallest request of the method: grpo rewarded by has_a, rloo by its reward model alone (no graders)
  const bare = (thresholds: Record<string, unknown>) => (method === 'grpo' ? request(thresholds) : request(thresholds, []));

  test('passes the adapter on the grader, the figures in the summary', async () => {
    // GIVEN the real report: has_a scores the tuned model's greedy answers above the base's
    expect(tuned).toBeGreaterThanOrEqual(0.7);
    expect(tuned).toBeGreaterThan(base);
    // WHEN ReadEvalReport reads it with the plan's thresholds
    const result = await gate(request(), REPORT);
    // THEN it passes, and the summary shows the grader beside its minimum and the loss ratio it did not gate on
    expect(result).toMatchObject({ passed: true, failures: [], examples: REPORT.examples, judge: null, preference: null, forgettingIncrease: null });
    expect(result.graders!.tuned.has_a).toMatchObject({ mean: tuned, graded: REPORT.graders.tuned.has_a.graded, error_count: 0 });
    expect(result.summary).toContain(`grader has_a=${round(tuned)} (base ${round(base)}; min 0.7)`);
    expect(result.summary).toContain(`eval_loss_ratio=${round(result.evalLossRatio)} (max none)`);
    expect(result.summary).toContain(`reward_gain=${round(reward.gain)} (mean reward ${round(reward.base.mean)} -> ${round(reward.tuned.mean)} on ${reward.rows} answers; min 0)`);
  });

  test('fails when the minimum is above the measured mean: the rejection names the grader, its mean and the minimum', async () => {
    const minimum = Math.round((tuned + 0.01) * 1000) / 1000; // just above what the adapter scored
    const result = await gate(request({ minGraderMean: { has_a: minimum } }), REPORT);
    expect(result.passed).toBe(false);
    expect(result.failures).toEqual([`grader has_a mean ${round(tuned)} is below the minimum ${minimum}`]);
    expect(result.summary).toMatch(new RegExp(`^rejected: grader has_a mean ${round(tuned)} is below the minimum ${minimum} \\| .*grader has_a=${round(tuned)} \\(base ${round(base)}; min ${minimum}\\)`));
    // at the measured mean itself it passes (the minimum is inclusive)
    expect((await gate(request({ minGraderMean: { has_a: tuned } }), REPORT)).passed).toBe(true);
  });

  test.each([
    ['without grader results (an evaluation that ran no graders)', (r: any) => ({ ...r, graders: null }), 'the report has no grader results'],
    ['without this grader', (r: any) => ({ ...r, graders: { base: {}, tuned: {} } }), 'the report has no result for it (graders reported: none)'],
    [
      'whose grader errored on every row',
      (r: any) => ({ ...r, graders: { ...r.graders, tuned: { has_a: { mean: 0, graded: 0, error_count: 20, errors: [{ row: 0, error: 'bad pattern' }] } } } }),
      'it errored on every row (20 of them; row 0: bad pattern)',
    ],
    [
      'whose grader could not run',
      (r: any) => ({ ...r, graders: { ...r.graders, tuned: { has_a: { mean: null, graded: 0, error_count: 0, errors: [], unavailable: 'no such type' } } } }),
      'the evaluation could not run it (no such type)',
    ],
  ])('fails closed on a report %s', async (_, edit, why) => {
    const result = await gate(request(), edit(structuredClone(REPORT)));
    expect(result).toMatchObject({ passed: false, failures: [`grader has_a was not measured (minimum 0.7): ${why}`] });
    expect(result.summary).toContain('grader has_a=missing (min 0.7)');
  });

  test('the loss of the reference answers rose while the adapter learnt its task: a run that asks for maxEvalLossRatio gets it checked', async () => {
    // online RL maximises the reward of sampled completions, not the likelihood of the eval set's reference answers
    expect(REPORT.eval_loss_ratio).toBeGreaterThan(1);
    const result = await gate(request({ minGraderMean: { has_a: 0.7 }, maxEvalLossRatio: 1 }), REPORT);
    expect(result).toMatchObject({ passed: false, failures: [`eval_loss_ratio ${round(REPORT.eval_loss_ratio)} is above the maximum 1`] });
  });

  test('without minGraderMean the plan gates it on the reward gain, which passes the adapter that learnt its task although its eval loss ratio rose', async () => {
    // grpo with graders but no minimum; rloo with no graders at all: its reward model scores the answers
    const ungraded = bare({});
    expect((await plan(ungraded)).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 0 });
    // the run's reward of the tuned answers is above the base's, while the loss of the reference answers rose
    expect(reward.gain).toBeGreaterThan(0);
    expect(REPORT.eval_loss_ratio).toBeGreaterThan(1);
    const result = await gate(ungraded, REPORT);
    expect(result).toMatchObject({ passed: true, failures: [], reward: REPORT.reward });
    expect(result.summary).toMatch(new RegExp(`^passed \\| reward_gain=${round(reward.gain)} \\(mean reward ${round(reward.base.mean)} -> ${round(reward.tuned.mean)} on ${reward.rows} answers; min 0\\); eval_loss_ratio=${round(REPORT.eval_loss_ratio)} \\(max none\\)`));
  });

  test('fails when minRewardGain is above the measured gain: the rejection names the base and tuned mean reward, the gain and the minimum', async () => {
    const minimum = Math.round((reward.gain + 0.01) * 1000) / 1000;
    const result = await gate(bare({ minRewardGain: minimum }), REPORT);
    const why = `reward gain ${round(reward.gain)} is below the minimum ${minimum} (mean reward base ${round(reward.base.mean)}, tuned ${round(reward.tuned.mean)})`;
    expect(result).toMatchObject({ passed: false, failures: [why] });
    expect(result.summary.startsWith(`rejected: ${why} | reward_gain=${round(reward.gain)} (`)).toBe(true);
    // at the measured gain itself it passes (the minimum is inclusive)
    expect((await gate(bare({ minRewardGain: reward.gain }), REPORT)).passed).toBe(true);
  });

  test.each([
    ['without reward figures (an evaluation that did not score the reward)', (r: any) => ({ ...r, reward: undefined }), 'the report has no reward figures, which the evaluation writes for grpo and rloo runs'],
    ['with a null reward', (r: any) => ({ ...r, reward: null }), 'the report has no reward figures, which the evaluation writes for grpo and rloo runs'],
    [
      'whose tuned mean reward is not a finite number (null)',
      (r: any) => ({ ...r, reward: { ...r.reward, tuned: { ...r.reward.tuned, mean: null }, gain: null } }),
      `the mean reward is not a finite number (base ${REPORT.reward.base.mean}, tuned missing)`,
    ],
  ])('fails closed on a report %s', async (_, edit, why) => {
    const result = await gate(bare({}), edit(structuredClone(REPORT)));
    expect(result).toMatchObject({ passed: false, failures: [`reward gain was not measured (minimum 0): ${why}`] });
    expect(result.summary).toContain('reward_gain=missing (min 0)');
  });

  test('refuses a report whose reward gain disagrees with its means, or whose mean is not a number', async () => {
    const edited = structuredClone(REPORT);
    edited.reward.gain += 1;
    await expect(gate(bare({}), edited)).rejects.toThrow(/reward\.gain .* disagrees with the means it summarises .*gain = tuned\.mean - base\.mean/);
    const text = structuredClone(REPORT);
    text.reward.base.mean = 'high';
    await expect(gate(bare({}), text)).rejects.toThrow(/reward\.base\.mean must be a finite number, got "high"/);
  });
});
