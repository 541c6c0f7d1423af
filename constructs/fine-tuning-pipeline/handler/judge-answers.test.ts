import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConverseCommand, type ConverseCommandInput } from '@aws-sdk/client-bedrock-runtime';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { expectValidRequests } from '../../../test/support/api-model';
import type { JudgePlan } from '../../../lib/judge';
import { environmentSettings, planRunStep } from './plan-run';
import { JudgeAnswersEvent, Judgement, judgeAnswers, JudgeFailed, JudgeProgress, parseVerdict, renderTemplate, Sender } from './judge-answers';

// The generations.jsonl the real evaluation job wrote (training-images/trainer/tests/test_judge_fixture.py): the base
// answers "chat" to every prompt, the tuned model "dhat"; the first reference is "chat".
const GENERATIONS = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'contracts', 'generations.jsonl'), 'utf8');
const ROWS = GENERATIONS.trim().split('\n').map((l) => JSON.parse(l));

// The graders of that run: a score_model and a label_model grader are the judge's pointwise graders.
const GRADERS = [
  { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' },
  {
    type: 'score_model',
    name: 'quality',
    model: 'judge',
    range: [1, 5],
    pass_threshold: 4,
    input: [
      { role: 'system', content: 'Rate the French translation from 1 to 5.' },
      { role: 'user', content: 'Expected: {{ item.reference }}\nAnswer: {{ sample.output_text }}' },
    ],
  },
  {
    type: 'label_model',
    name: 'is_french',
    model: 'judge',
    labels: ['french', 'other'],
    passing_labels: ['french'],
    input: [{ role: 'user', content: 'Is this a French word? {{ sample.output_text }}' }],
  },
];
const MODEL = 'us.anthropic.claude-3-5-haiku-20241022-v1:0';

/** The judge part of the plan the real PlanRun makes, with the plane's environment as the pipeline sets it. */
function plannedJudge(judge: Record<string, unknown>, graders: unknown[] | null = GRADERS): JudgePlan {
  const env = environmentSettings({
    TUNEYARD_BUCKET_NAME: 'data-bucket',
    TUNEYARD_VOLUME_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:123456789012:key/k',
    TUNEYARD_OUTPUT_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:123456789012:key/k',
    TUNEYARD_JOB_NAME_PREFIX: 'tuneyard-',
    TUNEYARD_JUDGE_MODEL_IDS: `amazon.nova-pro-v1:0,${MODEL}`,
  });
  const result = planRunStep(
    {
      request: {
        dataset: { name: 'chats', sha256: 'c'.repeat(64) },
        baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/',
        recipe: { method: 'lora' },
        ...(graders ? { graders } : {}),
        judge: { modelId: MODEL, ...judge },
      },
    },
    env,
  );
  expect(result.judge).toBeNull();
  return result.plan.judge!;
}

/** An S3 bucket in memory, seeded with the evaluation job's generations.jsonl where the plan says. */
class FakeS3 implements Sender {
  readonly objects = new Map<string, string>();
  readonly requests: Array<{ operation: string; params: any }> = [];
  constructor(plan: JudgePlan, generations: string | null = GENERATIONS) {
    if (generations !== null) this.objects.set(`${plan.generations.bucket}/${plan.generations.key}`, generations);
  }
  async send(command: any): Promise<any> {
    const input = command.input;
    if (command instanceof PutObjectCommand) {
      this.requests.push({ operation: 'PutObject', params: input });
      this.objects.set(`${input.Bucket}/${input.Key}`, input.Body);
      return {};
    }
    if (command instanceof GetObjectCommand) {
      this.requests.push({ operation: 'GetObject', params: input });
      const body = this.objects.get(`${input.Bucket}/${input.Key}`);
      if (body === undefined) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey' });
      return { Body: { transformToString: async () => body } };
    }
    throw new Error(`unexpected S3 command ${command.constructor.name}`);
  }
  text(plan: JudgePlan, name: string): string {
    return this.objects.get(`${plan.output.bucket}/${plan.output.prefix}${name}`)!;
  }
}

/** Bedrock Runtime whose judge answers as `verdict` scripts it (from the request's prompt), recording each request. */
class ScriptedBedrock implements Sender {
  readonly requests: ConverseCommandInput[] = [];
  constructor(private readonly verdict: (prompt: string, input: ConverseCommandInput) => string) {}
  async send(command: any): Promise<any> {
    if (!(command instanceof ConverseCommand)) throw new Error(`unexpected Bedrock command ${command.constructor.name}`);
    this.requests.push(command.input);
    const prompt = [...(command.input.system ?? []), ...command.input.messages!.flatMap((m) => m.content!)].map((b: any) => b.text).join('\n');
    return { output: { message: { role: 'assistant', content: [{ text: this.verdict(prompt, command.input) }] } }, stopReason: 'end_turn', usage: { inputTokens: 100, outputTokens: 20, totalTokens: 120 } };
  }
}

/** The answer the pairwise prompt shows as A or B. */
const answerOf = (prompt: string, letter: 'A' | 'B') => new RegExp(`Answer ${letter}:\\n(.*)`).exec(prompt)?.[1];
const pairwise = (winner: (prompt: string) => 'A' | 'B' | 'tie') => (prompt: string) =>
  prompt.includes('Answer A:') ? JSON.stringify({ reasoning: `compared ${answerOf(prompt, 'A')} and ${answerOf(prompt, 'B')}`, winner: winner(prompt) }) : pointwiseVerdict(prompt);
/** Pointwise: the quality grader scores "dhat" 2 and "chat" 5; the label grader calls "chat" French. */
const pointwiseVerdict = (prompt: string) =>
  prompt.includes('"score"')
    ? JSON.stringify({ reasoning: 'graded', score: prompt.includes('Answer: chat') ? 5 : 2 })
    : JSON.stringify({ reasoning: 'looked it up', label: prompt.includes('word? chat') ? 'french' : 'other' });

const START: JudgeProgress = { cursor: 0, parts: [], done: false };
const forever = { remainingMs: () => 10 * 60 * 1000 };

async function runToEnd(event: JudgeAnswersEvent, s3: FakeS3, bedrock: Sender, runtime: Partial<Parameters<typeof judgeAnswers>[1]> = {}) {
  let progress = event.progress;
  let invocations = 0;
  do {
    progress = await judgeAnswers({ ...event, progress }, { s3, bedrock, ...forever, ...runtime });
    invocations++;
  } while (!progress.done && invocations < 100);
  return { progress, invocations };
}

const judgements = (s3: FakeS3, plan: JudgePlan): Judgement[] => s3.text(plan, 'judgements.jsonl').trim().split('\n').map((l) => JSON.parse(l));

describe('JudgeAnswers', () => {
  test('a position-biased judge (always A) gets ties from the both-order rule, never wins', async () => {
    // GIVEN
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(pairwise(() => 'A'));
    // WHEN
    const { progress } = await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    // THEN
    expect(progress.result).toEqual({ reportUri: `s3://data-bucket/${plan.output.prefix}judge.json`, items: 4, wins: 0, ties: 4, losses: 0, winRate: 0 });
    const rows = judgements(s3, plan);
    expect(rows.map((j) => [j.index, j.order, j.verdict])).toEqual(
      ROWS.flatMap((r) => [
        [r.index, 'base-tuned', 'base'],
        [r.index, 'tuned-base', 'tuned'],
      ]),
    );
    expect(rows[0].reasoning).toBe('compared chat and dhat');
    expect(JSON.parse(rows[1].raw!)).toEqual({ reasoning: 'compared dhat and chat', winner: 'A' });
    expect(plan.output.prefix).toMatch(/^eval-reports\/chats-lora-[0-9a-f]{12}\/judge\/$/);
  });

  test('a consistent judge that prefers the tuned answer in either position gives wins', async () => {
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(pairwise((p) => (answerOf(p, 'A') === 'dhat' ? 'A' : 'B')));
    const { progress } = await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    expect(progress.result).toMatchObject({ items: 4, wins: 4, ties: 0, losses: 0, winRate: 1 });
  });

  test('a judge that prefers the answer equal to the reference gives a loss where the base answered it, ties elsewhere', async () => {
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(
      pairwise((p) => {
        const reference = /Reference answer \(written by a person\):\n(.*)/.exec(p)![1];
        return answerOf(p, 'A') === reference ? 'A' : answerOf(p, 'B') === reference ? 'B' : 'tie';
      }),
    );
    const { progress } = await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    // only the first reference ("chat") is an answer, the base's: a loss; winRate = 0 / (0 + 1 + 3)
    expect(progress.result).toMatchObject({ items: 4, wins: 0, ties: 3, losses: 1, winRate: 0 });
    const summary = JSON.parse(s3.text(plan, 'judge.json'));
    expect(summary.pairwise).toEqual({ items: 4, wins: 0, ties: 3, losses: 1, errors: 0, winRate: 0 });
    expect(summary.rule).toMatch(/a tie otherwise; winRate = wins \/ \(wins \+ losses \+ ties\)/);
  });

  test('an unparseable verdict is an error row, counted and left out of the win rate, never a tie', async () => {
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan);
    let calls = 0;
    const bedrock = new ScriptedBedrock((prompt) => (++calls === 2 ? 'B is better: {"winner": "B"}' : pairwise((p) => (answerOf(p, 'A') === 'dhat' ? 'A' : 'B'))(prompt)));
    const { progress } = await runToEnd({ judge: plan, progress: START }, s3, bedrock, { concurrency: 1 });
    expect(progress.result).toMatchObject({ items: 3, wins: 3, ties: 0, losses: 0, winRate: 1 });
    const bad = judgements(s3, plan).filter((j) => j.error !== null);
    expect(bad).toEqual([expect.objectContaining({ index: 0, order: 'tuned-base', raw: 'B is better: {"winner": "B"}', verdict: null })]);
    expect(bad[0].error).toMatch(/not one JSON object/);
    expect(JSON.parse(s3.text(plan, 'judge.json')).pairwise.errors).toBe(1);
  });

  test('fails when no verdict can be parsed, with the judgements stored', async () => {
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(() => '```json\n{"reasoning": "x", "winner": "A"}\n```');
    await expect(runToEnd({ judge: plan, progress: START }, s3, bedrock)).rejects.toThrow(/gave no usable pairwise verdict on 4 items \(8 errors\)/);
    expect(judgements(s3, plan)).toHaveLength(8);
  });

  test("runs the run's score_model and label_model graders pointwise on both answers", async () => {
    const plan = plannedJudge({ pairwise: false });
    expect(plan.graders.map((g) => g.name)).toEqual(['quality', 'is_french']);
    // the cost bound: 100 items (the default maxItems) × 2 graders × 2 answers
    expect(plan.maxItems).toBe(100);
    expect(plan.maxCalls).toBe(100 * 2 * 2);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(pointwiseVerdict);
    const { progress } = await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    expect(progress.result).toMatchObject({ items: 0, wins: 0 });
    const summary = JSON.parse(s3.text(plan, 'judge.json'));
    expect(summary.pairwise).toBeNull();
    expect(summary.pointwise).toEqual({
      quality: { base: { mean: 5, passed: 1, graded: 4, error_count: 0 }, tuned: { mean: 2, passed: 0, graded: 4, error_count: 0 } },
      is_french: { base: { mean: 1, passed: 1, graded: 4, error_count: 0 }, tuned: { mean: 0, passed: 0, graded: 4, error_count: 0 } },
    });
    // the grader's system message and the JSON verdict asked for are the system prompt; the templates are rendered
    const first = bedrock.requests.find((r) => r.system!.some((b: any) => b.text.includes('Rate the French')))!;
    expect(first.messages).toEqual([{ role: 'user', content: [{ text: 'Expected: chat\nAnswer: chat' }] }]);
    expect((first.system![1] as any).text).toMatch(/"score": <a number from 1 to 5>/);
  });

  test('a score outside the range and a label not offered are error rows', async () => {
    const plan = plannedJudge({ pairwise: false });
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock((p) => (p.includes('"score"') ? '{"reasoning": "great", "score": 9}' : '{"reasoning": "hm", "label": "French"}'));
    await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    const summary = JSON.parse(s3.text(plan, 'judge.json'));
    expect(summary.pointwise.quality.tuned).toEqual({ mean: null, passed: null, graded: 0, error_count: 4 });
    expect(summary.errors).toBe(16);
    expect(judgements(s3, plan)[0].error).toMatch(/"score" must be a number from 1 to 5 \(got 9\)/);
  });

  test('judges up to maxItems, loops from its cursor when time runs low, and ends with the same result', async () => {
    const plan = plannedJudge({ maxItems: 3 }, null);
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(pairwise((p) => (answerOf(p, 'A') === 'dhat' ? 'A' : 'B')));
    // each invocation has time for one item: its clock drops below the reserve once the item's first call is sent
    let progress = START;
    let invocations = 0;
    while (!progress.done && invocations < 10) {
      const before = bedrock.requests.length;
      progress = await judgeAnswers({ judge: plan, progress }, { s3, bedrock, concurrency: 2, reserveMs: 1000, remainingMs: () => (bedrock.requests.length === before ? 5000 : 0) });
      invocations++;
    }
    expect(invocations).toBe(3);
    expect(progress.parts).toEqual([0, 1, 2]);
    expect(progress.result).toMatchObject({ items: 3, wins: 3, winRate: 1 });
    expect(bedrock.requests).toHaveLength(6);
    expect(judgements(s3, plan).map((j) => j.index)).toEqual([0, 0, 1, 1, 2, 2]);
  });

  test('every request it sends is valid against the Bedrock Runtime and S3 API models', async () => {
    const plan = plannedJudge({ rubric: 'Prefer the correct French word.' });
    const s3 = new FakeS3(plan);
    const bedrock = new ScriptedBedrock(pairwise(() => 'tie'));
    await runToEnd({ judge: plan, progress: START }, s3, bedrock);
    expect(bedrock.requests).toHaveLength(4 * (2 + 2 * 2));
    expect(bedrock.requests.every((r) => r.modelId === MODEL && r.inferenceConfig?.temperature === 0)).toBe(true);
    expectValidRequests([
      ...bedrock.requests.map((params) => ({ service: 'bedrock-runtime', operation: 'Converse', params })),
      ...s3.requests.map(({ operation, params }) => ({ service: 's3', operation, params })),
    ]);
  });

  test('fails when the evaluation wrote no generations.jsonl, naming the object and the fix', async () => {
    const plan = plannedJudge({}, null);
    const s3 = new FakeS3(plan, null);
    await expect(judgeAnswers({ judge: plan, progress: START }, { s3, bedrock: new ScriptedBedrock(() => ''), ...forever })).rejects.toThrow(JudgeFailed);
    await expect(judgeAnswers({ judge: plan, progress: START }, { s3, bedrock: new ScriptedBedrock(() => ''), ...forever })).rejects.toThrow(
      /generations\.jsonl does not exist: the evaluation job wrote no generations .* or remove judge from the request/,
    );
  });
});

describe('verdicts and templates', () => {
  test.each([
    ['{"reasoning": "r", "winner": "A"}', { reasoning: 'r', winner: 'A' }],
    ['  {"reasoning": "r", "winner": "tie"}\n', { reasoning: 'r', winner: 'tie' }],
    ['{"winner": "A"}', 'the verdict has no "reasoning" string'],
    ['{"reasoning": "r", "winner": "a"}', '"winner" must be "A", "B" or "tie" (got "a")'],
    ['["A"]', 'the answer is JSON but not an object'],
    ['Answer A.', expect.stringMatching(/^the answer is not one JSON object/)],
  ])('parses %j strictly', (raw, expected) => {
    expect(parseVerdict(raw, { winner: true })).toEqual(expected);
  });

  test('renders the templates graders.py renders, and names a field the row lacks', () => {
    const row = ROWS[0];
    expect(renderTemplate('{{ sample.output_text }} vs {{item.reference}} ({{ item.prompt[0].role }})', 'chien', row)).toBe('chien vs chat (user)');
    expect(renderTemplate('{{ sample.output_json.word }}', '{"word": "chien"}', row)).toBe('chien');
    expect(() => renderTemplate('{{ item.expected }}', 'x', row)).toThrow(/has no expected there/);
    expect(() => renderTemplate('{{ sample.output_json.word }}', 'not json', row)).toThrow(/the answer is not JSON/);
  });
});
