import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Sender, StoredValidationReport, validateDatasetVersion, ValidateDatasetInput } from '.';

const CORPUS = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'datasets');
const SHA = 'ab'.repeat(32);
const PREFIX = `datasets/support-chats/${SHA}/`;
const REPORT_KEY = `${PREFIX}validation-report.json`;

/** An in-memory S3 bucket speaking the three commands the handler sends. */
class FakeS3 implements S3Sender {
  readonly objects = new Map<string, Buffer>();
  readonly calls: Array<{ command: string; key?: string; ifNoneMatch?: string }> = [];
  /** Written just before the next PutObject of the report: another run winning the race. */
  racingReport?: StoredValidationReport;

  async send(command: GetObjectCommand | PutObjectCommand | ListObjectsV2Command): Promise<unknown> {
    if (command instanceof ListObjectsV2Command) {
      this.calls.push({ command: 'List', key: command.input.Prefix });
      const keys = [...this.objects.keys()].filter((k) => k.startsWith(command.input.Prefix ?? ''));
      return { Contents: keys.map((Key) => ({ Key })) };
    }
    const key = command.input.Key!;
    if (command instanceof GetObjectCommand) {
      this.calls.push({ command: 'Get', key });
      const data = this.objects.get(key);
      if (!data) throw Object.assign(new Error('The specified key does not exist.'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } });
      // The body as a stream of small chunks, like a socket would deliver it.
      const chunks = Array.from({ length: Math.ceil(data.length / 7) }, (_, i) => data.subarray(i * 7, i * 7 + 7));
      return { Body: Readable.from(chunks) };
    }
    this.calls.push({ command: 'Put', key, ifNoneMatch: command.input.IfNoneMatch });
    if (this.racingReport && key === REPORT_KEY) {
      this.objects.set(key, Buffer.from(JSON.stringify(this.racingReport)));
      this.racingReport = undefined;
    }
    if (command.input.IfNoneMatch === '*' && this.objects.has(key)) {
      throw Object.assign(new Error('At least one of the pre-conditions you specified did not hold'), {
        name: 'PreconditionFailed',
        $metadata: { httpStatusCode: 412 },
      });
    }
    this.objects.set(key, Buffer.from(command.input.Body as string));
    return {};
  }

  report(): StoredValidationReport {
    return JSON.parse(this.objects.get(REPORT_KEY)!.toString('utf8'));
  }
}

function bucketWith(files: Record<string, string>): FakeS3 {
  const s3 = new FakeS3();
  for (const [name, fixture] of Object.entries(files)) s3.objects.set(`${PREFIX}${name}`, fs.readFileSync(path.join(CORPUS, fixture)));
  return s3;
}

const input = (extra: Partial<ValidateDatasetInput> = {}): ValidateDatasetInput => ({
  datasetName: 'support-chats',
  datasetSha256: SHA,
  method: 'sft',
  ...extra,
});

test('a valid dataset: the report is written once with If-None-Match and a summary returned', async () => {
  // GIVEN a chat dataset version
  const s3 = bucketWith({ 'train.jsonl': 'chat.jsonl' });
  // WHEN validated for sft
  const out = await validateDatasetVersion(input({ maxLength: 2048 }), { s3, bucket: 'data' });
  // THEN the summary says ok and where the report is
  expect(out).toMatchObject({ ok: true, reused: false, format: 'chat', rows: 3, errorCount: 0, duplicates: 0, reportS3Uri: `s3://data/${REPORT_KEY}` });
  expect(out.tokens.overLimit).toBe(0);
  // AND the report was put with If-None-Match: * (the bucket policy refuses any other write under datasets/)
  expect(s3.calls.filter((c) => c.command === 'Put')).toEqual([{ command: 'Put', key: REPORT_KEY, ifNoneMatch: '*' }]);
  expect(s3.report()).toMatchObject({ schemaVersion: 1, dataset: { name: 'support-chats', sha256: SHA }, train: { format: 'chat', rows: 3, errorCount: 0 } });
});

test('an invalid dataset throws DatasetInvalid with line-numbered errors, after storing its report', async () => {
  // GIVEN a dataset with errors on lines 3, 4, 6 and 7
  const s3 = bucketWith({ 'train.jsonl': 'bad-several.jsonl' });
  // WHEN validated
  const run = validateDatasetVersion(input({ method: 'lora' }), { s3, bucket: 'data' });
  // THEN the error is named for the state machine's Catch and lists the errors by line
  await expect(run).rejects.toMatchObject({ name: 'DatasetInvalid' });
  await run.catch((err: Error) => {
    expect(err.message).toMatch(/4 error\(s\)/);
    for (const line of [3, 4, 6, 7]) expect(err.message).toContain(`train.jsonl:${line}: `);
    expect(err.message).toContain(`s3://data/${REPORT_KEY}`);
  });
  expect(s3.report().train.errorCount).toBe(4);
});

test('a 412 on the report write returns the report that won the race', async () => {
  // GIVEN another run writes a report between our listing and our write
  const s3 = bucketWith({ 'train.jsonl': 'chat.jsonl' });
  const other = bucketWith({ 'train.jsonl': 'chat.jsonl' });
  await validateDatasetVersion(input(), { s3: other, bucket: 'data' });
  const existing = other.report();
  s3.racingReport = { ...existing, train: { ...existing.train, rows: 99 } };
  // WHEN validated
  const out = await validateDatasetVersion(input(), { s3, bucket: 'data' });
  // THEN the existing report is read back and used (rows 99 is only in it), and not overwritten
  expect(out).toMatchObject({ ok: true, reused: true, rows: 99 });
  expect(s3.report().train.rows).toBe(99);
});

test('an existing report is reused without reading the dataset, and the method is applied to it', async () => {
  // GIVEN a preference dataset validated once for dpo
  const s3 = bucketWith({ 'train.jsonl': 'preference.jsonl' });
  await validateDatasetVersion(input({ method: 'dpo' }), { s3, bucket: 'data' });
  s3.calls.length = 0;
  // WHEN the same version is validated for dpo again, then for sft
  const again = await validateDatasetVersion(input({ method: 'dpo' }), { s3, bucket: 'data' });
  const forSft = validateDatasetVersion(input({ method: 'sft' }), { s3, bucket: 'data' });
  // THEN the report is reused (no GetObject of train.jsonl, no second write)
  expect(again).toMatchObject({ ok: true, reused: true, format: 'preference' });
  // AND the method check still runs per run
  await expect(forSft).rejects.toMatchObject({ name: 'DatasetInvalid', message: expect.stringMatching(/train\.jsonl:1: .*preference-for-sft/) });
  expect(s3.calls.filter((c) => c.key === `${PREFIX}train.jsonl` || c.command === 'Put')).toEqual([]);
});

describe('train/eval overlap is judged as tuneyard upload judged it (from the manifest)', () => {
  const withManifest = (manifest?: object) => {
    const s3 = bucketWith({ 'train.jsonl': 'prompt-completion.jsonl', 'eval.jsonl': 'prompt-completion.jsonl' });
    if (manifest) s3.objects.set(`${PREFIX}manifest.json`, Buffer.from(JSON.stringify(manifest)));
    return s3;
  };

  test('a version uploaded with --allow-overlap passes, with the overlap recorded', async () => {
    // GIVEN an eval file equal to the training file, uploaded with --allow-overlap
    const s3 = withManifest({ name: 'support-chats', allowOverlap: true });
    // WHEN validated
    const out = await validateDatasetVersion(input(), { s3, bucket: 'data' });
    // THEN all 3 eval rows are counted, and allowed
    expect(out).toMatchObject({ ok: true, rows: 3, evalRows: 3, contaminated: 3, overlap: { count: 3, policy: 'allowed' } });
    expect(s3.report().eval?.contamination?.examples[0]).toEqual({ line: 1, trainLine: 1 });
  });

  test('fails with DatasetInvalid when the manifest does not allow overlap (or there is none)', async () => {
    for (const manifest of [{ name: 'support-chats', allowOverlap: false }, undefined]) {
      const s3 = withManifest(manifest);
      await expect(validateDatasetVersion(input(), { s3, bucket: 'data' })).rejects.toMatchObject({
        name: 'DatasetInvalid',
        message: expect.stringMatching(/eval\.jsonl:1: 3 eval rows are also in the training file.*--allow-overlap` \(overlap\)$/m),
      });
    }
  });

  test('a version whose manifest predates the rule (no allowOverlap) passes with a warning policy', async () => {
    const s3 = withManifest({ name: 'support-chats', createdBy: 'tuneyard upload' });
    const out = await validateDatasetVersion(input(), { s3, bucket: 'data' });
    expect(out).toMatchObject({ ok: true, contaminated: 3, overlap: { count: 3, policy: 'warning' } });
  });

  test('overlap is found through case, white space and Unicode compatibility forms', async () => {
    // GIVEN an eval row that is a training row with other capitals, a trailing space and a full-width letter
    const s3 = new FakeS3();
    s3.objects.set(`${PREFIX}train.jsonl`, Buffer.from(JSON.stringify({ prompt: 'What is  the capital of France?', completion: 'Paris.' }) + '\n'));
    s3.objects.set(`${PREFIX}eval.jsonl`, Buffer.from(JSON.stringify({ prompt: 'what is the capital of ＦRANCE? ', completion: 'PARIS.' }) + '\n'));
    // WHEN validated without --allow-overlap in the manifest
    const run = validateDatasetVersion(input(), { s3, bucket: 'data' });
    // THEN it is refused as overlap
    await expect(run).rejects.toMatchObject({ name: 'DatasetInvalid', message: expect.stringMatching(/1 eval row is also in the training file/) });
  });
});

test('fails with DatasetInvalid when eval.jsonl has another format than train.jsonl', async () => {
  const s3 = bucketWith({ 'train.jsonl': 'prompt-completion.jsonl', 'eval.jsonl': 'chat.jsonl' });
  await expect(validateDatasetVersion(input(), { s3, bucket: 'data' })).rejects.toMatchObject({
    name: 'DatasetInvalid',
    message: expect.stringMatching(/eval\.jsonl:1: the eval file is chat but the training file is prompt-completion.*\(mixed-format\)/),
  });
});

test('fails with DatasetNotFound when the version has no train.jsonl', async () => {
  const s3 = new FakeS3();
  await expect(validateDatasetVersion(input(), { s3, bucket: 'data' })).rejects.toMatchObject({
    name: 'DatasetNotFound',
    message: expect.stringMatching(/train\.jsonl does not exist.*tuneyard upload/),
  });
});

test('fails with InvalidInput on a malformed version, method or max length', async () => {
  const s3 = new FakeS3();
  await expect(validateDatasetVersion(input({ datasetSha256: 'abc' }), { s3, bucket: 'data' })).rejects.toMatchObject({ name: 'InvalidInput', message: expect.stringMatching(/not a sha256/) });
  await expect(validateDatasetVersion(input({ method: 'ppo' as never }), { s3, bucket: 'data' })).rejects.toMatchObject({ name: 'InvalidInput' });
  await expect(validateDatasetVersion(input({ maxLength: 0 }), { s3, bucket: 'data' })).rejects.toMatchObject({ name: 'InvalidInput' });
  await expect(validateDatasetVersion(input(), { s3 })).rejects.toMatchObject({ name: 'InvalidInput', message: expect.stringMatching(/DATA_BUCKET/) });
});

test('the input bucket overrides the default one', async () => {
  const s3 = bucketWith({ 'train.jsonl': 'text.jsonl' });
  const out = await validateDatasetVersion(input({ bucket: 'other' }), { s3, bucket: 'data' });
  expect(out.reportS3Uri).toBe(`s3://other/${REPORT_KEY}`);
});

test('method grpo: a training file of prompt-only rows passes, judged from the stored report, which serves other methods unchanged', async () => {
  // GIVEN a version whose train.jsonl holds prompts only and whose eval.jsonl holds reference answers (corpus chat rows)
  const s3 = bucketWith({ 'eval.jsonl': 'chat.jsonl' });
  const prompts = [{ messages: [{ role: 'user', content: 'What is 2 + 2?' }], reference: '4' }, { prompt: 'What is 3 + 3?', reference: '6' }];
  s3.objects.set(`${PREFIX}train.jsonl`, Buffer.from(prompts.map((r) => JSON.stringify(r)).join('\n') + '\n'));
  // WHEN validated for grpo
  const out = await validateDatasetVersion(input({ method: 'grpo' }), { s3, bucket: 'data' });
  // THEN it passes, and the stored (method-independent) report carries the prompt-only counts
  expect(out).toMatchObject({ ok: true, errorCount: 0 });
  expect(s3.report().train.promptOnly).toEqual({ validRows: 2, errorCount: 0, errors: [] });
  // AND the same stored report refuses the version for lora (its rows have no answers to train on)
  await expect(validateDatasetVersion(input({ method: 'lora' }), { s3, bucket: 'data' })).rejects.toMatchObject({ name: 'DatasetInvalid' });
});

test('method rloo: judged like grpo on prompt-only rows, from the same stored report; a training file with answers is refused naming its line', async () => {
  // GIVEN a version of prompts, validated once for grpo (the report stored)
  const s3 = bucketWith({ 'eval.jsonl': 'chat.jsonl' });
  const prompts = [{ messages: [{ role: 'user', content: 'Write a haiku about rain.' }] }, { prompt: 'Summarise: the cat sat on the mat.' }];
  s3.objects.set(`${PREFIX}train.jsonl`, Buffer.from(prompts.map((r) => JSON.stringify(r)).join('\n') + '\n'));
  await validateDatasetVersion(input({ method: 'grpo' }), { s3, bucket: 'data' });
  // WHEN validated for rloo
  const out = await validateDatasetVersion(input({ method: 'rloo' }), { s3, bucket: 'data' });
  // THEN the stored report serves it and it passes
  expect(out).toMatchObject({ ok: true, reused: true, errorCount: 0 });
  // AND a version whose training rows carry answers (corpus chat rows) is refused for rloo at the first such line
  const answered = bucketWith({ 'train.jsonl': 'chat.jsonl', 'eval.jsonl': 'chat.jsonl' });
  await expect(validateDatasetVersion(input({ method: 'rloo' }), { s3: answered, bucket: 'data' })).rejects.toMatchObject({
    name: 'DatasetInvalid',
    message: expect.stringMatching(/train\.jsonl:1: .*must end with a user message .*\(methods grpo and rloo train on prompt-only rows\)/),
  });
});
