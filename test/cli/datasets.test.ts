/**
 * Datasets on a moto S3: `tuneyard upload` and the pipeline's ValidateDataset handler (the real one,
 * with the real SDK client against moto) reach the same verdict on the same files, because both call
 * lib/datasets' checkDatasetFiles/datasetVerdict; upload stores what the pipeline reads (JSON Lines,
 * whatever the input was) and records its findings in the manifest; `tuneyard datasets` lists them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { S3Sender, validateDatasetVersion } from '../../constructs/dataset-validator/handler';
import { runCli } from '../../lib/cli/program';
import type { Method } from '../../lib/methods';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli } from './support';

const BUCKET = 'tuneyard-data-datasets';
let plane: MotoPlane;
let tmp: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-datasets-'));
}, 60_000);

afterAll(async () => {
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const chat = (user: string, assistant: string) => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: assistant }] });
const pair = (prompt: string, chosen: string, rejected: string) => ({ prompt, chosen, rejected });
const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const TRAIN = [chat('What is 2+2?', '4'), chat('Capital of France?', 'Paris.'), chat('Largest planet?', 'Jupiter.'), chat('Boiling point of water?', '100 °C at sea level.')];

function write(name: string, data: string | Buffer): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, data);
  return file;
}

async function object(key: string): Promise<Buffer> {
  const out = await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** The pipeline's ValidateDataset on a version in moto's bucket: its verdict and the error codes of its message. */
async function pipelineVerdict(name: string, sha: string, method: Method): Promise<{ ok: boolean; codes: string[]; output?: Record<string, unknown> }> {
  try {
    const output = await validateDatasetVersion({ datasetName: name, datasetSha256: sha, method }, { s3: plane.clients.s3 as unknown as S3Sender, bucket: BUCKET });
    return { ok: true, codes: [], output: output as unknown as Record<string, unknown> };
  } catch (e) {
    if ((e as Error).name !== 'DatasetInvalid') throw e;
    const codes = (e as Error).message.split('\n').slice(1).map((l) => /\(([a-z0-9-]+)\)$/.exec(l)?.[1]).filter((c): c is string => Boolean(c));
    return { ok: false, codes: [...new Set(codes)].sort() };
  }
}

/** The codes of the errors `validate --json` found (files' and cross-file), without warnings. */
function cliCodes(json: { train: { report: { errorGroups: Array<{ code: string }> } }; eval?: { report: { errorGroups: Array<{ code: string }> } }; issues: Array<{ code: string; severity: string }> }): string[] {
  const codes = [
    ...json.train.report.errorGroups.map((g) => g.code),
    ...(json.eval?.report.errorGroups.map((g) => g.code) ?? []),
    ...json.issues.filter((i) => i.severity === 'error').map((i) => i.code),
  ];
  return [...new Set(codes)].sort();
}

describe('the CLI and the pipeline reach the same verdict on the same files', () => {
  const CASES: Array<{ name: string; method: Method; train: unknown[]; eval?: unknown[]; allowOverlap?: boolean; ok: boolean; codes: string[] }> = [
    { name: 'clean chat pair', method: 'sft', train: TRAIN, eval: [chat('Smallest planet?', 'Mercury.')], ok: true, codes: [] },
    { name: 'chat train, alpaca eval (each valid alone)', method: 'sft', train: TRAIN, eval: [{ instruction: 'Name a colour', input: '', output: 'Blue' }], ok: false, codes: ['mixed-format'] },
    { name: 'an eval row copied with a trailing space and other capitals', method: 'lora', train: TRAIN, eval: [chat('capital of FRANCE? ', 'Paris.'), chat('Smallest planet?', 'Mercury.')], ok: false, codes: ['overlap'] },
    { name: 'the same overlap, uploaded with --allow-overlap', method: 'lora', train: TRAIN, eval: [chat('Capital of France?', 'Paris. ')], allowOverlap: true, ok: true, codes: [] },
    { name: 'invalid rows in both files', method: 'sft', train: [...TRAIN, '{"messages": []}', 'not json'], eval: [chat('Q?', ' ')], ok: false, codes: ['empty-content', 'invalid-json', 'no-assistant'] },
    { name: 'preference pairs for dpo', method: 'dpo', train: [pair('Say hi', 'Hi!', 'No.'), pair('Count to 2', '1, 2', '3')], eval: [pair('Say bye', 'Bye!', 'Hi.')], ok: true, codes: [] },
    { name: 'chat rows for dpo', method: 'dpo', train: TRAIN, ok: false, codes: ['not-preference'] },
  ];

  test.each(CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    // GIVEN the files
    const name = `verdict-${i}`;
    const train = write(`${name}-train.jsonl`, jsonl(c.train));
    const evalFile = c.eval && write(`${name}-eval.jsonl`, jsonl(c.eval));
    const evalArgs = evalFile ? ['--eval', evalFile] : [];

    // WHEN `validate --strict` and `upload` check them
    const validated = await cli(['validate', train, ...evalArgs, '--method', c.method, '--strict', '--json']);
    const uploaded = await cli(['upload', train, ...evalArgs, '--name', name, '--json', ...(c.allowOverlap ? ['--allow-overlap'] : [])], { clients: plane.factory });
    // (a version upload refused is put in the bucket as it is, as another tool could, without a manifest)
    const sha = sha256(evalFile ? sha256(fs.readFileSync(train)) + sha256(fs.readFileSync(evalFile)) : fs.readFileSync(train));
    if (uploaded.code !== 0) {
      await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `datasets/${name}/${sha}/train.jsonl`, Body: fs.readFileSync(train) }));
      if (evalFile) await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `datasets/${name}/${sha}/eval.jsonl`, Body: fs.readFileSync(evalFile) }));
    }
    // AND the pipeline's ValidateDataset checks the version in the bucket
    const pipeline = await pipelineVerdict(name, sha, c.method);

    // THEN upload and the pipeline agree, and validate --strict too (but for an overlap allowed at upload)
    expect({ upload: uploaded.code === 0, pipeline: pipeline.ok }).toEqual({ upload: c.method === 'dpo' && !c.ok ? true : c.ok, pipeline: c.ok });
    if (!c.allowOverlap) expect(validated.code === 0).toBe(c.ok);
    // AND validate and the pipeline name the same errors
    expect(pipeline.codes).toEqual(c.codes);
    const json = JSON.parse(validated.stdout);
    expect(c.allowOverlap ? cliCodes(json).filter((code) => code !== 'overlap') : [...new Set([...cliCodes(json), ...(json.issues as Array<{ code: string }>).map((x) => x.code)])].sort()).toEqual(c.codes);
    if (uploaded.code !== 0) {
      // a refused upload wrote nothing of its own, and its --json error points at the JSON, not "above"
      expect(uploaded.stderr).toMatch(/^error: not uploaded: \d+ errors?, listed in the JSON on stdout/);
      expect(JSON.parse(uploaded.stdout).ok).toBe(false);
    }
  });

  test('the pipeline accepts the overlap of a version uploaded with --allow-overlap because its manifest says so', async () => {
    const listed = await plane.clients.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'datasets/verdict-3/' }));
    const manifestKey = listed.Contents!.map((o) => o.Key!).find((k) => k.endsWith('/manifest.json'))!;
    const manifest = JSON.parse((await object(manifestKey)).toString('utf8'));
    expect(manifest).toMatchObject({ allowOverlap: true, overlap: { count: 1, examples: [{ line: 1, trainLine: 2 }] }, format: 'chat' });
    const pipeline = await pipelineVerdict('verdict-3', manifest.sha256, 'lora');
    expect(pipeline.output).toMatchObject({ ok: true, contaminated: 1, overlap: { count: 1, policy: 'allowed' } });
  });
});

describe('upload stores JSON Lines, whatever the input', () => {
  test('a .jsonl.gz file is stored decompressed, named by the hash of its JSON Lines, and the manifest says what it was', async () => {
    // GIVEN gzip-compressed chat rows, with one duplicate
    const text = jsonl([...TRAIN, TRAIN[0]]);
    const file = write('support.jsonl.gz', zlib.gzipSync(text));
    // WHEN uploaded
    const { code, stdout } = await cli(['upload', file, '--name', 'gz-chats'], { clients: plane.factory });
    // THEN train.jsonl holds the decompressed bytes under their own sha256
    const sha = sha256(text);
    expect(stdout).toContain(`uploaded gz-chats@${sha}\n`);
    expect(code).toBe(0);
    expect((await object(`datasets/gz-chats/${sha}/train.jsonl`)).toString('utf8')).toBe(text);
    // AND the manifest records the findings and the input
    const manifest = JSON.parse((await object(`datasets/gz-chats/${sha}/manifest.json`)).toString('utf8'));
    expect(manifest).toMatchObject({
      name: 'gz-chats',
      sha256: sha,
      format: 'chat',
      allowOverlap: false,
      files: { train: { key: 'train.jsonl', sha256: sha, bytes: Buffer.byteLength(text), rows: 5, duplicates: 1, source: { gzip: true, kind: 'jsonl', bytes: fs.statSync(file).size } } },
    });
    expect(manifest.overlap).toBeUndefined();
    // AND the pipeline reads it as it is
    expect((await pipelineVerdict('gz-chats', sha, 'sft')).output).toMatchObject({ ok: true, rows: 5, duplicates: 1 });
  });

  test('a JSON array and standard input are stored as JSON Lines', async () => {
    const array = write('array.json', JSON.stringify(TRAIN, null, 2));
    const fromArray = await cli(['upload', array, '--name', 'array-chats', '--json'], { clients: plane.factory });
    expect(fromArray.code).toBe(0);
    const { sha256: arraySha } = JSON.parse(fromArray.stdout);
    const stored = (await object(`datasets/array-chats/${arraySha}/train.jsonl`)).toString('utf8');
    expect(stored).toBe(jsonl(TRAIN));
    expect(arraySha).toBe(sha256(stored));

    let stdout = '';
    const code = await runCli(['upload', '-', '--name', 'stdin-chats', '--json'], {
      clients: plane.factory,
      io: { out: (s) => void (stdout += s), err: () => undefined, errIsTTY: false, stdin: () => Readable.from([Buffer.from(jsonl(TRAIN.slice(0, 2)))]) },
    });
    expect(code).toBe(0);
    const { sha256: stdinSha } = JSON.parse(stdout);
    expect((await object(`datasets/stdin-chats/${stdinSha}/train.jsonl`)).toString('utf8')).toBe(jsonl(TRAIN.slice(0, 2)));
  });
});

describe('tuneyard datasets', () => {
  test('lists the versions from their manifests: name, version, format, rows, duplicates, overlap, when', async () => {
    const { code, stdout } = await cli(['datasets'], { clients: plane.factory });
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME +VERSION +FORMAT +ROWS +EVAL ROWS +DUPLICATES +OVERLAP +UPLOADED$/);
    const gz = lines.find((l) => l.startsWith('gz-chats '))!;
    expect(gz.split(/ {2,}/)).toEqual(['gz-chats', sha256(jsonl([...TRAIN, TRAIN[0]])).slice(0, 12), 'chat', '5', '-', '1', '-', expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)]);
    expect(lines.find((l) => l.startsWith('verdict-3 '))).toMatch(/ 1 \(allowed\) /);
    expect(lines.find((l) => l.startsWith('verdict-0 '))!.split(/ {2,}/)[6]).toBe('0');
    // versions refused by upload have no manifest, so they are not versions
    expect(lines.some((l) => l.startsWith('verdict-1 '))).toBe(false);
    const json = JSON.parse((await cli(['datasets', '--json'], { clients: plane.factory })).stdout);
    expect(json.find((v: { name: string }) => v.name === 'verdict-3')).toMatchObject({ format: 'chat', rows: 4, evalRows: 1, overlap: 1, allowOverlap: true });
  });

  test('NAME shows the newest version with the pipeline\'s validation report; a version not yet validated says so', async () => {
    const shown = await cli(['datasets', 'gz-chats'], { clients: plane.factory });
    expect(shown.stdout).toContain(`dataset      gz-chats@${sha256(jsonl([...TRAIN, TRAIN[0]]))}\n`);
    expect(shown.stdout).toContain('rows         5 train\nduplicates   1\n');
    expect(shown.stdout).toMatch(/validated {4}\d{4}-.* by the pipeline \(validation-report\.json\)\ntrain\.jsonl: ok, 5 rows \(5 valid\)/);
    expect(shown.code).toBe(0);
    const notYet = await cli(['datasets', 'stdin-chats'], { clients: plane.factory });
    expect(notYet.stdout).toContain('validated    not yet by the pipeline');
    const json = JSON.parse((await cli(['datasets', 'gz-chats', '--json'], { clients: plane.factory })).stdout);
    expect(json).toMatchObject({ name: 'gz-chats', format: 'chat', rows: 5, manifest: { allowOverlap: false }, validationReport: { train: { rows: 5, errorCount: 0 } } });
  });

  test('fails with a clear message on an unknown dataset or version', async () => {
    expect(await cli(['datasets', 'nope'], { clients: plane.factory })).toMatchObject({ code: 1, stderr: 'error: dataset nope not found: list datasets with `tuneyard datasets`\n' });
    const wrong = await cli(['datasets', 'gz-chats@0000000'], { clients: plane.factory });
    expect(wrong.stderr).toMatch(/^error: dataset gz-chats has no version 0000000: its versions are [0-9a-f]{12}\n$/);
    expect(wrong.code).toBe(1);
  });
});
