/**
 * `tuneyard stage-model` against moto's S3 with the real SDK clients (lib-storage's multipart upload
 * included). The model folder is made by the test: a config, a tokenizer file and safetensors
 * weights with real headers (the walkthrough test stages a model transformers saved and loads it back).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { MODEL_MANIFEST } from '../../lib/cli/commands/stage-model';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli } from './support';

const BUCKET = 'tuneyard-data-stage';
let plane: MotoPlane;
let tmp: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-stage-'));
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A safetensors file: the 8-byte little-endian header length, the JSON header, then the tensor bytes. */
function safetensors(tensors: Record<string, { dtype: string; shape: number[] }>, bytesPerElement: number): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const size = t.shape.reduce((p, d) => p * d, 1) * bytesPerElement;
    header[name] = { ...t, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const data = Buffer.alloc(offset);
  for (let i = 0; i < offset; i++) data[i] = (i * 31 + 7) & 0xff;
  return Buffer.concat([length, json, data]);
}

/** A sharded model folder: one 17 MiB shard (more than one 16 MiB part), one small shard, the index, config and tokenizer, and hf's .cache/. */
function modelFolder(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(path.join(dir, '.cache', 'huggingface'), { recursive: true });
  fs.writeFileSync(path.join(dir, '.cache', 'huggingface', 'download.lock'), 'hf bookkeeping');
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 64 }));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|end|>' }));
  fs.writeFileSync(path.join(dir, 'model-00001-of-00002.safetensors'), safetensors({ 'embed.weight': { dtype: 'U8', shape: [17 * 1024, 1024] } }, 1));
  fs.writeFileSync(path.join(dir, 'model-00002-of-00002.safetensors'), safetensors({ 'lm_head.weight': { dtype: 'F32', shape: [10, 30] }, 'norm.weight': { dtype: 'F32', shape: [30] } }, 4));
  fs.writeFileSync(
    path.join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { 'embed.weight': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors', 'norm.weight': 'model-00002-of-00002.safetensors' } }),
  );
  return dir;
}

async function keys(prefix: string): Promise<string[]> {
  const listed = await plane.clients.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length)).sort();
}

async function objectBytes(key: string): Promise<Buffer> {
  const out = await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

describe('stage-model', () => {
  const FILES = ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json'];
  let dir: string;

  beforeAll(() => {
    dir = modelFolder('tiny-llama');
  });

  test('uploads every file but hidden ones, with its sha256, then the checksum manifest; the big shard in parts', async () => {
    const { code, stdout, stderr } = await cli(['stage-model', dir, '--name', 'tiny-llama'], { clients: plane.factory });

    expect(stderr).toBe('');
    expect(code).toBe(0);
    const parameters = 17 * 1024 * 1024 + 10 * 30 + 30;
    expect(stdout).toBe(
      `staged tiny-llama: 6 files, 17.0 MiB, ${Math.round(parameters / 1e6)}M parameters (6 uploaded, 0 already there)\n` +
        `  s3://${BUCKET}/base-models/tiny-llama/\n  train on it: tuneyard train --dataset NAME --base-model s3://${BUCKET}/base-models/tiny-llama/\n`,
    );
    expect(await keys('base-models/tiny-llama/')).toEqual([...FILES, MODEL_MANIFEST].sort());
    for (const file of FILES) {
      const local = fs.readFileSync(path.join(dir, file));
      expect(sha256(await objectBytes(`base-models/tiny-llama/${file}`))).toBe(sha256(local));
      const head = await plane.clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `base-models/tiny-llama/${file}` }));
      expect(head.Metadata?.sha256).toBe(sha256(local));
    }
    // a multipart upload's ETag ends with its part count
    const big = await plane.clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'base-models/tiny-llama/model-00001-of-00002.safetensors' }));
    expect(big.ETag).toMatch(/-2"$/);
    const manifest = JSON.parse((await objectBytes(`base-models/tiny-llama/${MODEL_MANIFEST}`)).toString());
    expect(manifest).toEqual({
      name: 'tiny-llama',
      parameters,
      bytes: FILES.reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0),
      files: Object.fromEntries(FILES.map((f) => [f, { sha256: sha256(fs.readFileSync(path.join(dir, f))), bytes: fs.statSync(path.join(dir, f)).size }])),
      createdBy: 'tuneyard stage-model',
    });
  });

  test('staging the same folder again writes nothing', async () => {
    const before = await plane.clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `base-models/tiny-llama/${MODEL_MANIFEST}` }));

    const { code, stdout } = await cli(['stage-model', dir, '--name', 'tiny-llama', '--json'], { clients: plane.factory });

    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ files: 6, uploaded: [], skipped: FILES, manifestWritten: false });
    const after = await plane.clients.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `base-models/tiny-llama/${MODEL_MANIFEST}` }));
    expect(after.LastModified).toEqual(before.LastModified);
    const text = await cli(['stage-model', dir, '--name', 'tiny-llama'], { clients: plane.factory });
    expect(text.stdout).toMatch(/^tiny-llama is already staged: 6 files, 17\.0 MiB, \d+M parameters, nothing uploaded\n/);
  });

  test('resumes: uploads only the files missing or different in S3', async () => {
    // GIVEN an upload cut short (the big shard missing) and a file whose object holds other bytes
    await plane.clients.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'base-models/tiny-llama/model-00001-of-00002.safetensors' }));
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/tiny-llama/config.json', Body: '{"model_type":"gpt2"}' }));

    // WHEN it is staged again
    const { code, stdout } = await cli(['stage-model', dir, '--name', 'tiny-llama', '--json'], { clients: plane.factory });

    // THEN those two are uploaded, the rest skipped, and S3 holds the folder's bytes
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.uploaded).toEqual(['config.json', 'model-00001-of-00002.safetensors']);
    expect(out.skipped).toEqual(FILES.filter((f) => !out.uploaded.includes(f)));
    for (const file of out.uploaded) {
      expect(sha256(await objectBytes(`base-models/tiny-llama/${file}`))).toBe(sha256(fs.readFileSync(path.join(dir, file))));
    }
  });

  test('refuses a name whose folder in S3 holds files of another model', async () => {
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/other/pytorch_model.bin', Body: 'x' }));
    const { code, stderr } = await cli(['stage-model', dir, '--name', 'other'], { clients: plane.factory });
    expect(stderr).toBe(
      `error: s3://${BUCKET}/base-models/other/ holds 1 file that ${dir} does not (pytorch_model.bin): it is another model, or another version of this one. Stage this folder under another --name\n`,
    );
    expect(code).toBe(1);
    expect(await keys('base-models/other/')).toEqual(['pytorch_model.bin']);
  });

  test('fails when the folder is not a loadable model, naming what is missing, and uploads nothing', async () => {
    const empty = path.join(tmp, 'half-downloaded');
    fs.mkdirSync(empty);
    fs.writeFileSync(path.join(empty, 'tokenizer_config.json'), '{}');
    fs.writeFileSync(path.join(empty, 'training_args.bin'), 'not weights');

    const { code, stderr } = await cli(['stage-model', empty, '--name', 'half'], { clients: plane.factory });

    expect(stderr).toBe(
      `error: ${empty} is not a Hugging Face model folder the trainer can load: no config.json (the model's architecture); no weights (*.safetensors or *.bin); ` +
        'no tokenizer files (one of tokenizer.json, tokenizer.model, vocab.json, vocab.txt, spiece.model, sentencepiece.bpe.model). ' +
        `Download the whole model (\`hf download <model id> --local-dir ${empty}\`; run it again to finish an interrupted download), or save it with save_pretrained() and the tokenizer's save_pretrained()\n`,
    );
    expect(code).toBe(1);
    expect(await keys('base-models/half/')).toEqual([]);
  });

  test('fails when a shard the weight index names is missing (an interrupted download)', async () => {
    const partial = modelFolder('partial');
    fs.rmSync(path.join(partial, 'model-00002-of-00002.safetensors'));
    const { code, stderr } = await cli(['stage-model', partial, '--name', 'partial'], { clients: plane.factory });
    expect(stderr).toContain('is not a Hugging Face model folder the trainer can load: 1 of the 2 weight shards model.safetensors.index.json names (model-00002-of-00002.safetensors)');
    expect(code).toBe(1);
    expect(await keys('base-models/partial/')).toEqual([]);
  });

  test('fails on a bad name before any AWS call', async () => {
    const { code, stderr } = await cli(['stage-model', dir, '--name', 'has space']);
    expect(stderr).toMatch(/^error: option '--name <name>' argument 'has space' is invalid\. "has space" is not a base model name: use 1-63 letters/);
    expect(code).toBe(64); // a usage error
  });
});
