import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { pythonEnv } from './api-model';

/** What Hugging Face reads of one tokenizer folder that make_tokenizers.py built. */
export interface PythonVocabulary {
  readonly model_type: string;
  /** `len(AutoTokenizer.from_pretrained(folder).get_vocab())`: what the trainer compares. */
  readonly size: number;
  readonly fingerprint: string;
  /** The same of `tokenizers.Tokenizer.from_file(tokenizer.json).get_vocab(with_added_tokens=True)`. */
  readonly tokenizers_size: number;
  readonly tokenizers_fingerprint: string;
}

/** The cases make_tokenizers.py builds (folders under its output), and Python's comparison of each pair. */
export interface PythonTokenizers {
  readonly cases: Record<string, PythonVocabulary>;
  readonly pairs: ReadonlyArray<{ first: string; second: string; equal: boolean; differing: number }>;
}

/**
 * Builds small tokenizers with the `tokenizers` and `transformers` libraries of the project's Python environment
 * (no downloads) into `dir/<case>/` (tokenizer.json, tokenizer_config.json), and returns what Python reads of them.
 */
export function makeTokenizers(dir: string): PythonTokenizers {
  const result = spawnSync(path.join(pythonEnv(), 'bin', 'python'), [path.join(__dirname, 'make_tokenizers.py'), dir], {
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false' },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`make_tokenizers.py exited with ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}
