import { createHash } from 'node:crypto';

/**
 * The version hash of a dataset, which names its folder `datasets/<name>/<hash>/`:
 * - train file only: the sha256 of the train file's bytes (so `sha256sum train.jsonl` finds it);
 * - train and eval: the sha256 of the ASCII string `<train sha256><eval sha256>` (the two
 *   lower-case hex digests concatenated, 128 characters, no separator).
 * Either way 64 lower-case hex characters, changing when either file's bytes change.
 */
export function datasetVersionHash(trainSha256: string, evalSha256?: string): string {
  if (evalSha256 === undefined) return trainSha256;
  return createHash('sha256').update(trainSha256 + evalSha256, 'ascii').digest('hex');
}
