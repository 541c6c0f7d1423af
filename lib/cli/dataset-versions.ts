import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { isNotFound } from '../aws-errors';
import { DATA_PREFIXES, DATASET_MANIFEST, datasetNameProblem, datasetVersionOfManifest, datasetVersionPrefix } from '../layout';
import { CliError } from './errors';
import type { DatasetVersion, RunClient } from './run-client';

/** The pipeline's report beside a version (constructs/dataset-validator). */
export const VALIDATION_REPORT = 'validation-report.json';

/** One dataset version as its manifest.json describes it. */
export interface DatasetVersionInfo extends DatasetVersion {
  /** When the manifest (the object that completes a version) was written. */
  readonly uploaded?: Date;
  /** manifest.json, as `tuneyard upload` wrote it (older versions have fewer fields). */
  readonly manifest: DatasetManifest;
}

/** The fields of manifest.json that `tuneyard datasets` shows (see `manifest()` in commands/datasets.ts). */
export interface DatasetManifest {
  readonly name?: string;
  readonly sha256?: string;
  readonly format?: string | null;
  readonly dialect?: string | null;
  readonly allowOverlap?: boolean;
  readonly overlap?: { readonly count: number; readonly examples?: Array<{ line: number; trainLine: number }> };
  readonly files?: Record<string, { readonly rows?: number; readonly duplicates?: number; readonly bytes?: number; readonly format?: string | null }>;
  readonly [key: string]: unknown;
}

/**
 * The dataset versions in the plane's data bucket (every `datasets/<name>/<sha256>/manifest.json`), newest
 * first, with their manifests; only those of `name` when given.
 */
export async function listDatasetVersions(client: RunClient, name?: string): Promise<DatasetVersionInfo[]> {
  if (name !== undefined) {
    const problem = datasetNameProblem(name);
    if (problem) throw new CliError(problem);
  }
  const { dataBucketName } = await client.plane();
  const found: Array<DatasetVersion & { uploaded?: Date }> = [];
  let token: string | undefined;
  do {
    const page = await client.clients.s3.send(
      new ListObjectsV2Command({ Bucket: dataBucketName, Prefix: `${DATA_PREFIXES.datasets}${name === undefined ? '' : `${name}/`}`, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const version = datasetVersionOfManifest(object.Key ?? '');
      if (version && (name === undefined || version.name === name)) found.push({ ...version, uploaded: object.LastModified });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  found.sort((a, b) => (b.uploaded?.getTime() ?? 0) - (a.uploaded?.getTime() ?? 0) || a.name.localeCompare(b.name));
  // the manifests, 16 GetObject calls at a time
  const versions: DatasetVersionInfo[] = [];
  for (let i = 0; i < found.length; i += 16) {
    const batch = found.slice(i, i + 16);
    const manifests = await Promise.all(batch.map((version) => readVersionJson<DatasetManifest>(client, version, DATASET_MANIFEST)));
    batch.forEach((version, j) => versions.push({ ...version, manifest: manifests[j] ?? {} }));
  }
  return versions;
}

/** A JSON file of a dataset version (`manifest.json`, `validation-report.json`), or undefined when it is not there. */
export async function readVersionJson<T>(client: RunClient, version: DatasetVersion, file: string): Promise<T | undefined> {
  const { dataBucketName } = await client.plane();
  const key = `${datasetVersionPrefix(version.name, version.sha256)}${file}`;
  let text: string;
  try {
    const object = await client.clients.s3.send(new GetObjectCommand({ Bucket: dataBucketName, Key: key }));
    text = (await object.Body?.transformToString('utf-8')) ?? '';
  } catch (e) {
    if (isNotFound(e) || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new CliError(`s3://${dataBucketName}/${key} is not valid JSON (${(e as Error).message})`);
  }
}
