/**
 * The data bucket's layout: one definition, used by the constructs (policies, grants, lifecycle),
 * the pipeline and the CLI.
 *
 *   datasets/<name>/<sha256>/{train.jsonl,eval.jsonl,manifest.json,validation-report.json}
 *       immutable, content-addressed dataset versions; write-once, never expire
 *   artifacts/<run id>/...        training outputs (adapter, merged model, tokenizer, config)
 *   checkpoints/<run id>/...      spot checkpoints; expire after `checkpointExpiration`
 *   eval-reports/<run id>/...     eval.json and the gate's decision
 *   base-models/<name>/...        Hugging Face model folders staged for network-isolated jobs
 */
export const DATA_PREFIXES = {
  datasets: 'datasets/',
  artifacts: 'artifacts/',
  checkpoints: 'checkpoints/',
  evalReports: 'eval-reports/',
  baseModels: 'base-models/',
} as const;

export type DataPrefix = keyof typeof DATA_PREFIXES;

/**
 * Inside a training job's uncompressed `model/` output (what the registry registers): the LoRA
 * adapter as the tarball an inference component loads, and the full (or merged) weights folder a
 * single-model endpoint serves. The trainer writes both (training-images/trainer/README.md).
 */
export const MODEL_OUTPUT = {
  adapterArchive: 'adapter.tar.gz',
  fullWeights: 'full/',
} as const;

/** The file that completes a dataset version: uploads write it last, so a version counts once it exists. */
export const DATASET_MANIFEST = 'manifest.json';

/** Dataset names: lower-case letters, digits, `-`, `_` and `.`, starting with a letter or digit. */
export const DATASET_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** Returns why `name` is not a valid dataset name, or undefined when it is. */
export function datasetNameProblem(name: string): string | undefined {
  if (DATASET_NAME_PATTERN.test(name)) return undefined;
  return `dataset name "${name}" is invalid: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. "support-chats")`;
}

/** The key prefix of one dataset version: `datasets/<name>/<sha256>/`. */
export function datasetVersionPrefix(name: string, sha256: string): string {
  const problem = datasetNameProblem(name);
  if (problem) throw new Error(problem);
  if (!SHA256_PATTERN.test(sha256)) {
    throw new Error(`dataset version "${sha256}" is not a sha256: expected 64 lower-case hex characters`);
  }
  return `${DATA_PREFIXES.datasets}${name}/${sha256}/`;
}

/**
 * The dataset version whose manifest `key` is (`datasets/<name>/<sha256>/manifest.json`), or
 * undefined for any other key.
 */
export function datasetVersionOfManifest(key: string): { name: string; sha256: string } | undefined {
  const parts = key.split('/');
  if (parts.length !== 4 || `${parts[0]}/` !== DATA_PREFIXES.datasets || parts[3] !== DATASET_MANIFEST) return undefined;
  const [, name, sha256] = parts;
  return DATASET_NAME_PATTERN.test(name) && SHA256_PATTERN.test(sha256) ? { name, sha256 } : undefined;
}
