/**
 * `tuneyard stage-benchmark` and `tuneyard train --benchmark` against moto with the real SDK clients: a benchmark is
 * checked with the evaluation job's rules, stored as a dataset version of format multiple-choice, accepted as a run's
 * benchmark and refused as its training data (and a training dataset refused as a benchmark), before anything starts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand } from '@aws-sdk/client-sfn';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli } from './support';

const BUCKET = 'tuneyard-data-benchmarks';
const BASE = `s3://${BUCKET}/base-models/qwen2.5-0.5b-instruct/`;
// The corpus benchmarks.py runs too: a valid file and a file with one item past its last choice.
const CORPUS = path.join(__dirname, '..', 'fixtures', 'benchmarks');
const GOOD = path.join(CORPUS, 'good-questions.jsonl');
const BAD = path.join(CORPUS, 'bad-answer-out-of-range.jsonl');
let plane: MotoPlane;
let tmp: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET, outputs: { AllowHubModels: 'false', MinComputeCapability: '7.5' } });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-benchmarks-'));
  const chatFile = path.join(tmp, 'chat.jsonl');
  const rows = Array.from({ length: 20 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `question ${i}` }, { role: 'assistant', content: `answer ${i}` }] }));
  fs.writeFileSync(chatFile, rows.join('\n') + '\n');
  const up = await cli(['upload', chatFile, '--name', 'chats', '--json'], { clients: plane.factory });
  expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/qwen2.5-0.5b-instruct/config.json', Body: '{"model_type":"qwen2"}' }));
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const object = async (key: string) => (await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();

describe('stage-benchmark', () => {
  test('stores a valid file as a dataset version of format multiple-choice, once', async () => {
    const { code, stdout, stderr } = await cli(['stage-benchmark', GOOD, '--name', 'mmlu-mini', '--json'], { clients: plane.factory });
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const out = JSON.parse(stdout);
    const sha256 = createHash('sha256').update(fs.readFileSync(GOOD)).digest('hex');
    expect(out).toMatchObject({ dataset: `mmlu-mini@${sha256}`, created: true, format: 'multiple-choice', items: 3 });
    expect(await object(`datasets/mmlu-mini/${sha256}/train.jsonl`)).toBe(fs.readFileSync(GOOD, 'utf8'));
    expect(JSON.parse(await object(`datasets/mmlu-mini/${sha256}/manifest.json`))).toMatchObject({
      format: 'multiple-choice',
      files: { train: { key: 'train.jsonl', rows: 3, format: 'multiple-choice' } },
      benchmark: { items: 3, questions: 3, contexts: 0, minChoices: 2, maxChoices: 4 },
      createdBy: 'tuneyard stage-benchmark',
    });
    const again = await cli(['stage-benchmark', GOOD, '--name', 'mmlu-mini'], { clients: plane.factory });
    expect(again.stdout).toMatch(/^mmlu-mini@[0-9a-f]{64} already exists: nothing staged\n/);
    // `tuneyard datasets` lists it with its format
    const listed = JSON.parse((await cli(['datasets', '--json'], { clients: plane.factory })).stdout);
    expect(listed).toContainEqual(expect.objectContaining({ name: 'mmlu-mini', format: 'multiple-choice', rows: 3 }));
  });

  test('refuses a file that breaks a rule, naming the line, the rule and the fix, and stores nothing', async () => {
    const { code, stdout, stderr } = await cli(['stage-benchmark', BAD, '--name', 'bad-mini'], { clients: plane.factory });
    expect(code).toBe(1);
    expect(stdout).toBe(
      'bad-answer-out-of-range.jsonl:2: answer must be the 0-based index of the right choice (0 to 2), got 3; expected {"question" or "context": str, "choices": [str, ...], "answer": index of the right choice} (bad-answer)\n',
    );
    expect(stderr).toMatch(/^error: not staged: 1 error in .*bad-answer-out-of-range\.jsonl; fix them/);
    const listed = JSON.parse((await cli(['datasets', '--json'], { clients: plane.factory })).stdout);
    expect(listed.map((v: any) => v.name)).not.toContain('bad-mini');
  });
});

describe('train with benchmarks', () => {
  test('--benchmark, the evaluation settings and the gate flags go into the request', async () => {
    const { code, stdout, stderr } = await cli(
      [
        'train', '--dataset', 'chats', '--base-model', BASE, '--benchmark', 'mmlu-mini', '--max-benchmark-drop', '0.02', '--max-generations', '50', '--max-new-tokens', '128', '--json',
      ],
      { clients: plane.factory },
    );
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    const { executionArn } = JSON.parse(stdout);
    const request = JSON.parse((await plane.clients.sfn.send(new DescribeExecutionCommand({ executionArn }))).input!);
    expect(request.benchmarkDatasets).toEqual([{ name: 'mmlu-mini', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    expect(request.evaluation).toEqual({ maxGenerations: 50, maxNewTokens: 128 });
    expect(request.thresholds).toMatchObject({ maxBenchmarkDrop: 0.02, maxEvalLossRatio: 1 });
  });

  test('--min-grader-mean names a grader of --graders; a name the graders lack is refused with the closest one', async () => {
    const graders = path.join(tmp, 'graders.json');
    fs.writeFileSync(graders, JSON.stringify([{ type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' }]));
    const ok = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--graders', graders, '--min-grader-mean', 'exact=0.8', '--run-name', 'graded', '--json'], { clients: plane.factory });
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    const request = JSON.parse((await plane.clients.sfn.send(new DescribeExecutionCommand({ executionArn: JSON.parse(ok.stdout).executionArn }))).input!);
    expect(request.thresholds.minGraderMean).toEqual({ exact: 0.8 });

    const typo = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--graders', graders, '--min-grader-mean', 'exakt=0.8'], { clients: plane.factory });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('thresholds.minGraderMean.exakt: names grader "exakt", which the run does not define (its graders: exact); did you mean "exact"?');
    const usage = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--min-grader-mean', '0.8']);
    expect(usage.stderr).toMatch(/option '--min-grader-mean <name=min>' argument '0\.8' is invalid\. "0\.8": give a grader name and its minimum mean, e\.g\. exact=0\.8\./);
  });

  test('refuses a benchmark as training data, a training dataset as a benchmark, and gate flags with nothing to measure', async () => {
    const asData = await cli(['train', '--dataset', 'mmlu-mini', '--base-model', BASE], { clients: plane.factory });
    expect(asData.code).toBe(1);
    expect(asData.stderr).toMatch(/is a multiple-choice benchmark \(staged with `tuneyard stage-benchmark`\), not training data: pass it as --benchmark mmlu-mini/);
    const asBenchmark = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--benchmark', 'chats'], { clients: plane.factory });
    expect(asBenchmark.code).toBe(1);
    expect(asBenchmark.stderr).toMatch(/--benchmark chats@[0-9a-f]{64} is a chat dataset, not a multiple-choice benchmark: stage the benchmark's items/);
    const noBenchmark = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--max-benchmark-drop', '0.02'], { clients: plane.factory });
    expect(noBenchmark.stderr).toContain('thresholds.maxBenchmarkDrop (--max-benchmark-drop): needs benchmarks, and the run names no benchmarkDatasets');
    const missing = await cli(['train', '--dataset', 'chats', '--base-model', BASE, '--benchmark', 'hellaswag'], { clients: plane.factory });
    expect(missing.stderr).toMatch(/benchmark "hellaswag" has no versions: stage one with `tuneyard stage-benchmark FILE --name hellaswag`/);
  });
});
