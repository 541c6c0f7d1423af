import { buildRunRequest, judgeCostText } from './cli/commands/runs';
import { DEFAULT_JUDGE_MAX_ITEMS, inferenceProfileGeography, JUDGE_MAX_ITEMS_CAP } from './judge';
import { parseRunRequest, planRun, PlanSettings } from './run-request';

const SETTINGS: PlanSettings = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: false,
  judgeModelIds: ['amazon.nova-pro-v1:0'],
};
const request = (extra: Record<string, unknown>) =>
  parseRunRequest({ dataset: { name: 'chats', sha256: 'c'.repeat(64) }, baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/', recipe: { method: 'lora' }, ...extra });
const SCORE = { type: 'score_model', name: 'quality', model: 'm', input: [{ role: 'user', content: 'Rate {{ sample.output_text }}' }], range: [0, 10] };

describe('the judge in a run plan', () => {
  test('a run without a judge plans none (null, so the state machine can test it)', () => {
    expect(planRun(request({}), SETTINGS).judge).toBeNull();
  });

  test('plans the judge with its cost bound: items, calls, where generations are read and judgements written', () => {
    const plan = planRun(request({ judge: { modelId: 'amazon.nova-pro-v1:0', maxItems: 50 }, graders: [SCORE], evaluation: { maxGenerations: 40 } }), SETTINGS);
    expect(plan.judge).toEqual({
      modelId: 'amazon.nova-pro-v1:0',
      maxItems: 40, // no more than the evaluation generates
      pairwise: true,
      graders: [SCORE],
      generations: { bucket: 'data-bucket', key: plan.evalReport.key.replace(/eval\.json$/, 'generations.jsonl') },
      output: { bucket: 'data-bucket', prefix: `eval-reports/${plan.runId}/judge/` },
      maxCalls: 40 * (2 + 2),
      // Nova Pro: $0.0008 / $0.0032 per 1k tokens; 40 items x (2 pairwise calls of 400 + 3 x 256 tokens in, 2 pointwise of 400 + 2 x 256), 150 out each
      cost: {
        usd: ((80 * 1168 + 80 * 912) / 1000) * 0.0008 + ((160 * 150) / 1000) * 0.0032,
        inputTokens: 80 * 1168 + 80 * 912,
        outputTokens: 160 * 150,
        pricesAsOf: '2026-04',
        assumption: expect.stringContaining('answers of at most 256 tokens'),
      },
    });
    // a model without a listed price
    expect(planRun(request({ judge: { modelId: 'anthropic.claude-3-haiku-20240307-v1:0' } }), { ...SETTINGS, judgeModelIds: ['anthropic.claude-3-haiku-20240307-v1:0'] }).judge!.cost).toBe('unpriced');
    // an inference profile is priced as its model
    const profile = planRun(request({ judge: { modelId: 'us.amazon.nova-pro-v1:0' } }), { ...SETTINGS, judgeModelIds: ['us.amazon.nova-pro-v1:0'] }).judge!.cost;
    expect(profile).toMatchObject({ inputTokens: 200 * 1168, outputTokens: 200 * 150 });
    expect(planRun(request({ judge: { modelId: 'amazon.nova-pro-v1:0' } }), SETTINGS).judge!.maxItems).toBe(DEFAULT_JUDGE_MAX_ITEMS);
  });

  test('fails when the pipeline allows no judge model, naming the prop to set', () => {
    expect(() => planRun(request({ judge: { modelId: 'amazon.nova-pro-v1:0' } }), { ...SETTINGS, judgeModelIds: [] })).toThrow(
      /allows no judge model, so the run could not call amazon\.nova-pro-v1:0\. Set the FineTuningPipeline prop judgeModelIds/,
    );
  });

  test('plans any model when the allow-list is not known (the CLI preflight): the pipeline\'s PlanRun checks it', () => {
    expect(planRun(request({ judge: { modelId: 'amazon.nova-lite-v1:0' } }), { ...SETTINGS, judgeModelIds: undefined }).judge!.modelId).toBe('amazon.nova-lite-v1:0');
  });

  test('fails when the model is not one the pipeline allows', () => {
    expect(() => planRun(request({ judge: { modelId: 'anthropic.claude-3-haiku-20240307-v1:0' } }), SETTINGS)).toThrow(
      /judge\.modelId: "anthropic\.claude-3-haiku-20240307-v1:0" is not one of the pipeline's judgeModelIds \(amazon\.nova-pro-v1:0\)/,
    );
  });

  test('fails when there is nothing to judge', () => {
    expect(() => planRun(request({ judge: { modelId: 'amazon.nova-pro-v1:0' }, evaluation: { maxGenerations: 0 } }), SETTINGS)).toThrow(/maxGenerations is 0, so there are no answers to judge/);
    expect(() => planRun(request({ judge: { modelId: 'amazon.nova-pro-v1:0', pairwise: false } }), SETTINGS)).toThrow(/pairwise is false and the run has no score_model or label_model grader/);
  });

  test.each([
    [{ modelId: 'arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0' }, /judge\.modelId: must be a Bedrock model id/],
    [{ modelId: 'amazon.nova-pro-v1:0', maxItems: JUDGE_MAX_ITEMS_CAP + 1 }, /judge\.maxItems: must be at most 1000 \(the judge's cost bound\)/],
    [{ modelId: 'amazon.nova-pro-v1:0', pairwize: true }, /judge\.pairwize: unknown field/],
  ])('fails when the request says %j', (judge, message) => {
    expect(() => request({ judge })).toThrow(message);
  });

  test('tells inference profiles from foundation models', () => {
    expect(inferenceProfileGeography('us.anthropic.claude-3-5-haiku-20241022-v1:0')).toBe('us');
    expect(inferenceProfileGeography('anthropic.claude-3-5-haiku-20241022-v1:0')).toBeUndefined();
  });
});

describe('tuneyard train --judge', () => {
  const train = (opts: Record<string, unknown>) =>
    buildRunRequest({ baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/', method: 'lora', spot: true, interval: 15, benchmark: [], minGraderMean: {}, ...opts } as never, {
      name: 'chats',
      sha256: 'c'.repeat(64),
    });

  test('puts the judge in the request, and train prints its cost line from the plan', () => {
    const request = train({ judge: 'amazon.nova-pro-v1:0', judgeMaxItems: 10 });
    expect(request.judge).toEqual({ modelId: 'amazon.nova-pro-v1:0', maxItems: 10, pairwise: true });
    const judge = planRun(request, SETTINGS).judge!;
    // 10 items x 2 calls: 20 x (400 + 3 x 256) tokens in at $0.0008/1k, 20 x 150 out at $0.0032/1k = $0.0283
    expect(judgeCostText(judge)).toMatch(/^judge amazon\.nova-pro-v1:0: at most 10 items, 20 Bedrock calls, ~\$0\.03, an estimate \(answers of at most 256 tokens/);
    const unpriced = planRun(train({ judge: 'anthropic.claude-3-haiku-20240307-v1:0' }), { ...SETTINGS, judgeModelIds: undefined }).judge!;
    expect(judgeCostText(unpriced)).toBe('judge anthropic.claude-3-haiku-20240307-v1:0: at most 100 items, 200 Bedrock calls, unpriced (no price for this model in the pricing table)');
  });

  test('fails when --judge-max-items is given without --judge', () => {
    expect(() => train({ judgeMaxItems: 5 })).toThrow(/--judge-max-items needs --judge MODEL_ID/);
  });
});
