import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Command, InvalidArgumentError } from 'commander';
import { isNotFound } from '../../aws-errors';
import { DATA_PREFIXES } from '../../layout';
import { CliError } from '../errors';
import { count } from '../format';
import { CliIo, progressBar } from '../io';
import type { CommandContext } from '../program';
import { RunClient } from '../run-client';
import { bytesText } from './checkpoints';

/** The checksum manifest `stage-model` writes last into `base-models/<name>/`: every file's sha256 and size. */
export const MODEL_MANIFEST = 'tuneyard-model.json';
/** The object metadata key that holds a staged file's sha256 (hex): a later run skips the file when it matches. */
export const SHA256_METADATA = 'sha256';
/** Files at or above this size are uploaded in parts of this size. */
export const PART_SIZE = 16 * 1024 * 1024;

/** Base model names: a folder name the training job's lineage accepts. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** The files a tokenizer loads from (any one of them; tokenizer_config.json alone is not a tokenizer). */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer.model', 'vocab.json', 'vocab.txt', 'spiece.model', 'sentencepiece.bpe.model'] as const;
const WEIGHTS = /\.(safetensors|bin)$/;
const WEIGHT_INDEXES = ['model.safetensors.index.json', 'pytorch_model.bin.index.json'];

/** One file of the model folder. */
export interface ModelFile {
  /** The path inside the folder, with `/` separators (the key below `base-models/<name>/`). */
  readonly name: string;
  readonly path: string;
  readonly bytes: number;
}

/**
 * The files of a model folder, sorted by name: every regular file, in subfolders too, but for
 * hidden ones (`.cache/` that `hf download --local-dir` keeps, `.gitattributes`).
 */
export function modelFiles(dir: string): ModelFile[] {
  const files: ModelFile[] = [];
  const walk = (folder: string, prefix: string) => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(folder, entry.name);
      const stat = fs.statSync(full);
      if (stat.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else if (stat.isFile()) files.push({ name: `${prefix}${entry.name}`, path: full, bytes: stat.size });
    }
  };
  walk(dir, '');
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * What a model folder lacks to be loaded by the trainer (transformers' `from_pretrained` on the
 * folder): config.json, weights (*.safetensors or *.bin, and every shard a weight index names),
 * and tokenizer files. Empty when it has them all.
 */
export function modelFolderProblems(files: readonly ModelFile[], dir: string): string[] {
  const names = new Set(files.map((f) => f.name));
  const problems: string[] = [];
  if (!names.has('config.json')) problems.push('no config.json (the model\'s architecture)');
  if (!files.some((f) => WEIGHTS.test(f.name) && !f.name.includes('/') && f.name !== 'training_args.bin')) {
    problems.push('no weights (*.safetensors or *.bin)');
  }
  for (const index of WEIGHT_INDEXES.filter((i) => names.has(i))) {
    let shards: string[] = [];
    try {
      shards = [...new Set(Object.values((JSON.parse(fs.readFileSync(path.join(dir, index), 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {}))];
    } catch (e) {
      problems.push(`${index} is not valid JSON (${(e as Error).message})`);
    }
    const absent = shards.filter((s) => !names.has(s));
    if (absent.length) problems.push(`${absent.length} of the ${shards.length} weight shards ${index} names (${absent.slice(0, 3).join(', ')}${absent.length > 3 ? ', ...' : ''})`);
  }
  if (!TOKENIZER_FILES.some((t) => names.has(t))) problems.push(`no tokenizer files (one of ${TOKENIZER_FILES.join(', ')})`);
  return problems;
}

/**
 * The parameter count of a model from its safetensors headers (each file starts with the
 * length of a JSON header that gives every tensor's shape), or undefined without safetensors.
 */
export function safetensorsParameters(files: readonly ModelFile[]): number | undefined {
  const weights = files.filter((f) => f.name.endsWith('.safetensors') && !f.name.includes('/'));
  if (!weights.length) return undefined;
  let total = 0;
  for (const file of weights) {
    const fd = fs.openSync(file.path, 'r');
    try {
      const size = Buffer.alloc(8);
      if (fs.readSync(fd, size, 0, 8, 0) < 8) return undefined;
      const length = Number(size.readBigUInt64LE(0));
      if (length <= 0 || length > 100 * 1024 * 1024 || length + 8 > file.bytes) return undefined;
      const header = Buffer.alloc(length);
      fs.readSync(fd, header, 0, length, 8);
      const tensors = JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>;
      for (const [name, tensor] of Object.entries(tensors)) {
        if (name !== '__metadata__') total += (tensor.shape ?? []).reduce((p, d) => p * d, 1);
      }
    } catch {
      return undefined;
    } finally {
      fs.closeSync(fd);
    }
  }
  return total;
}

async function sha256File(file: string, onBytes: (n: number) => void): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    onBytes((chunk as Buffer).length);
  }
  return hash.digest('hex');
}

/** The manifest written to `base-models/<name>/tuneyard-model.json`. */
export interface ModelManifest {
  readonly name: string;
  /** Parameters counted from the safetensors headers, when the weights are safetensors. */
  readonly parameters?: number;
  readonly bytes: number;
  readonly files: Record<string, { sha256: string; bytes: number }>;
  readonly createdBy: 'tuneyard stage-model';
}

export interface StageResult {
  readonly s3Uri: string;
  readonly uploaded: string[];
  readonly skipped: string[];
  readonly manifest: ModelManifest;
  /** False when the manifest in S3 already listed the same files: nothing was written. */
  readonly manifestWritten: boolean;
}

/**
 * Stages a Hugging Face model folder under `base-models/<name>/`: files whose object exists with
 * the same sha256 (object metadata `sha256`) are skipped, the others uploaded (in parts of
 * {@link PART_SIZE} when bigger), then the checksum manifest is written last. Refuses a folder
 * that is not a loadable model and a name whose folder in S3 holds files this folder does not.
 */
export async function stageModel(client: RunClient, io: CliIo, dir: string, name: string, partSize = PART_SIZE): Promise<StageResult> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new CliError(`${dir}: not a folder. Download the model first: \`hf download <model id> --local-dir ${dir}\``);
  }
  const files = modelFiles(dir);
  const problems = modelFolderProblems(files, dir);
  if (problems.length) {
    throw new CliError(
      `${dir} is not a Hugging Face model folder the trainer can load: ${problems.join('; ')}. ` +
        `Download the whole model (\`hf download <model id> --local-dir ${dir}\`; run it again to finish an interrupted download), or save it with save_pretrained() and the tokenizer's save_pretrained()`,
    );
  }
  const { dataBucketName } = await client.plane();
  const prefix = `${DATA_PREFIXES.baseModels}${name}/`;
  const s3Uri = `s3://${dataBucketName}/${prefix}`;

  const existing = new Map((await client.listObjects(prefix)).map((o) => [(o.Key ?? '').slice(prefix.length), o.Size ?? 0]));
  const local = new Set(files.map((f) => f.name));
  const foreign = [...existing.keys()].filter((k) => k !== MODEL_MANIFEST && !local.has(k));
  if (foreign.length) {
    throw new CliError(
      `${s3Uri} holds ${foreign.length} file${foreign.length === 1 ? '' : 's'} that ${dir} does not (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}): ` +
        'it is another model, or another version of this one. Stage this folder under another --name',
    );
  }

  const total = files.reduce((sum, f) => sum + f.bytes, 0);
  const hashing = progressBar(io, `checksumming ${name}`, total);
  let hashed = 0;
  const sums = new Map<string, string>();
  for (const file of files) {
    sums.set(file.name, await sha256File(file.path, (n) => hashing.update((hashed += n))));
  }
  hashing.finish();

  const uploading = progressBar(io, `uploading ${name}`, total);
  let sent = 0;
  const uploaded: string[] = [];
  const skipped: string[] = [];
  for (const file of files) {
    const sha256 = sums.get(file.name)!;
    if (existing.get(file.name) === file.bytes && (await storedSha256(client, dataBucketName, prefix + file.name)) === sha256) {
      skipped.push(file.name);
      uploading.update((sent += file.bytes));
      continue;
    }
    const before = sent;
    const upload = new Upload({
      client: client.clients.s3,
      params: { Bucket: dataBucketName, Key: prefix + file.name, Body: fs.createReadStream(file.path), ContentLength: file.bytes, Metadata: { [SHA256_METADATA]: sha256 } },
      partSize,
      queueSize: 4,
    });
    upload.on('httpUploadProgress', (p) => uploading.update(before + (p.loaded ?? 0)));
    await upload.done();
    uploaded.push(file.name);
    uploading.update((sent = before + file.bytes));
  }
  uploading.finish();

  const manifest: ModelManifest = {
    name,
    ...(safetensorsParameters(files) !== undefined ? { parameters: safetensorsParameters(files) } : {}),
    bytes: total,
    files: Object.fromEntries(files.map((f) => [f.name, { sha256: sums.get(f.name)!, bytes: f.bytes }])),
    createdBy: 'tuneyard stage-model',
  };
  const body = JSON.stringify(manifest, null, 2) + '\n';
  const manifestWritten = (await client.readObject(prefix + MODEL_MANIFEST)) !== body;
  if (manifestWritten) {
    await client.clients.s3.send(new PutObjectCommand({ Bucket: dataBucketName, Key: prefix + MODEL_MANIFEST, Body: body, ContentType: 'application/json' }));
  }
  return { s3Uri, uploaded, skipped, manifest, manifestWritten };
}

async function storedSha256(client: RunClient, bucket: string, key: string): Promise<string | undefined> {
  try {
    const head = await client.clients.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return head.Metadata?.[SHA256_METADATA];
  } catch (e) {
    if (isNotFound(e) || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw e;
  }
}

function modelName(value: string): string {
  if (!MODEL_NAME.test(value)) {
    throw new InvalidArgumentError(`"${value}" is not a base model name: use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit (e.g. "qwen2.5-0.5b-instruct")`);
  }
  return value;
}

export function registerStageModelCommand(program: Command, ctx: CommandContext): void {
  program
    .command('stage-model')
    .description(
      `Upload a Hugging Face model folder (weights, tokenizer, config) to the plane's ${DATA_PREFIXES.baseModels}<name>/, where network-isolated training jobs load it. ` +
        `Resumable and idempotent: files already there with the same sha256 are skipped; ${MODEL_MANIFEST} (sha256 and size of every file) is written last.`,
    )
    .argument('<dir>', 'the model folder, e.g. from `hf download <model id> --local-dir DIR`')
    .requiredOption('--name <name>', 'the folder name under base-models/ (put the size in it, e.g. qwen2.5-0.5b-instruct, so train can size the run)', modelName)
    .action(async (dir: string, opts: { name: string }, command: Command) => {
      ctx.use(command);
      const result = await stageModel(ctx.runClient(), ctx.io, dir, opts.name);
      const { manifest } = result;
      const files = Object.keys(manifest.files).length;
      const size = manifest.parameters !== undefined ? `, ${formatParameters(manifest.parameters)} parameters` : '';
      ctx.print(
        {
          name: opts.name,
          s3Uri: result.s3Uri,
          files,
          bytes: manifest.bytes,
          parameters: manifest.parameters,
          uploaded: result.uploaded,
          skipped: result.skipped,
          manifestWritten: result.manifestWritten,
        },
        (result.uploaded.length || result.manifestWritten
          ? `staged ${opts.name}: ${count(files)} files, ${bytesText(manifest.bytes)}${size} (${count(result.uploaded.length)} uploaded, ${count(result.skipped.length)} already there)\n`
          : `${opts.name} is already staged: ${count(files)} files, ${bytesText(manifest.bytes)}${size}, nothing uploaded\n`) +
          `  ${result.s3Uri}\n  train on it: tuneyard train --dataset NAME --base-model ${result.s3Uri}\n`,
      );
    });
}

/** `21K`, `494M`, `8.03B`. */
function formatParameters(n: number): string {
  if (n >= 1e9) return `${Number((n / 1e9).toPrecision(3))}B`;
  return n >= 1e6 ? `${Math.round(n / 1e6)}M` : `${Math.round(n / 1e3)}K`;
}
