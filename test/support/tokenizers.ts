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

/** What AutoTokenizer.from_pretrained reads of one folder that make_chat_template_tokenizers.py built. */
export interface PythonChatTemplate {
  /** `tokenizer.chat_template is not None`. */
  readonly is_not_none: boolean;
  /** `bool(tokenizer.chat_template)`: what the trainer requires of a grpo/rloo policy tokenizer. */
  readonly truthy: boolean;
  /** The folder's files, relative to it (subfolders as `folder/name`). */
  readonly files: readonly string[];
}

/**
 * Builds small tokenizer folders with and without a chat template, saved by the project's transformers
 * (save_pretrained: chat_template.jinja, tokenizer_config.json's chat_template, additional_chat_templates/), into
 * `dir/<case>/`, and returns what AutoTokenizer reads of each.
 */
export function makeChatTemplateTokenizers(dir: string): Record<string, PythonChatTemplate> {
  const result = spawnSync(path.join(pythonEnv(), 'bin', 'python'), [path.join(__dirname, 'make_chat_template_tokenizers.py'), dir], {
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false' },
  });
  if (result.status !== 0) throw new Error(`make_chat_template_tokenizers.py exited with ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}
