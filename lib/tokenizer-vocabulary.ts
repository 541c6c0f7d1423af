/**
 * A tokenizer's vocabulary as Hugging Face's `get_vocab()` returns it (the map token -> id: the model's vocabulary
 * and the added tokens), read from a `tokenizer.json` (the `tokenizers` library's file, which a fast tokenizer saves).
 * The trainer refuses a reward model whose `get_vocab()` is not the policy's (grpo.py check_reward_model); PlanRun
 * compares the same maps before any job starts.
 */
import { createHash } from 'node:crypto';

/** The map token -> id of one tokenizer.json, and which model type it came from. */
export interface TokenizerVocabulary {
  /** `model.type`: BPE, WordPiece, WordLevel or Unigram. */
  readonly modelType: string;
  /** token -> id: `model.vocab`, then `added_tokens` (an added token's id wins, as in `tokenizers`' get_vocab). */
  readonly tokens: ReadonlyMap<string, number>;
}

/** A tokenizer.json that holds no vocabulary this module can read; the message says what is wrong. */
export class TokenizerFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerFileError';
  }
}

/**
 * The vocabulary of a tokenizer.json's text (or parsed document). BPE, WordPiece and WordLevel keep `model.vocab` as
 * an object {token: id}; Unigram as a list of [piece, score] whose index is the id. `added_tokens[].{id, content}`
 * then set their ids (`tokenizers` merges them over the model's vocabulary the same way).
 */
export function parseTokenizerVocabulary(source: string | Buffer | unknown, where = 'tokenizer.json'): TokenizerVocabulary {
  let document: unknown = source;
  if (typeof source === 'string' || Buffer.isBuffer(source)) {
    try {
      document = JSON.parse(source.toString());
    } catch (e) {
      throw new TokenizerFileError(`${where} is not JSON (${(e as Error).message}); a tokenizer.json is the file a fast tokenizer saves (save_pretrained)`);
    }
  }
  const model = (document as { model?: { type?: unknown; vocab?: unknown } } | null)?.model;
  if (typeof model !== 'object' || model === null) throw new TokenizerFileError(`${where} has no "model" object; is it a tokenizers tokenizer.json?`);
  const vocab = model.vocab;
  const tokens = new Map<string, number>();
  const modelType = typeof model.type === 'string' ? model.type : Array.isArray(vocab) ? 'Unigram' : 'BPE';
  if (Array.isArray(vocab)) {
    vocab.forEach((entry, id) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string') throw new TokenizerFileError(`${where}: model.vocab[${id}] is not a [piece, score] pair`);
      tokens.set(entry[0], id);
    });
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id)) throw new TokenizerFileError(`${where}: model.vocab[${JSON.stringify(token)}] is ${JSON.stringify(id)}, not an integer id`);
      tokens.set(token, id as number);
    }
  } else {
    throw new TokenizerFileError(`${where}: model (type ${modelType}) has no vocab; a BPE, WordPiece, WordLevel or Unigram model keeps its vocabulary in model.vocab`);
  }
  const added = (document as { added_tokens?: unknown }).added_tokens ?? [];
  if (!Array.isArray(added)) throw new TokenizerFileError(`${where}: added_tokens is not a list`);
  added.forEach((token: { id?: unknown; content?: unknown }, i) => {
    if (typeof token?.content !== 'string' || !Number.isInteger(token.id)) throw new TokenizerFileError(`${where}: added_tokens[${i}] has no content and integer id`);
    tokens.set(token.content, token.id as number);
  });
  return { modelType, tokens };
}

/** Compares code points (as Python's sorted() does), not UTF-16 code units (as Array.prototype.sort does). */
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * sha256 (hex) of the vocabulary's pairs sorted by id, then token: `json.dumps(sorted((id, token) ...),
 * ensure_ascii=False, separators=(",", ":"))` of `[[token, id], ...]` in UTF-8. Equal maps give equal fingerprints,
 * whatever the file's formatting, normalizer or model settings.
 */
export function vocabularyFingerprint(vocabulary: TokenizerVocabulary): string {
  const pairs = [...vocabulary.tokens].sort(([ta, ia], [tb, ib]) => ia - ib || byCodePoint(ta, tb));
  return createHash('sha256').update(JSON.stringify(pairs), 'utf8').digest('hex');
}

/** How two vocabularies differ. */
export interface VocabularyDiff {
  /** The number of tokens of each (`len(get_vocab())`). */
  readonly sizes: readonly [number, number];
  /**
   * The (token, id) pairs that only one side holds: what the trainer counts as "token ids differ"
   * (`len(set(ours.items()) ^ set(theirs.items()))`). 0 when the maps are equal.
   */
  readonly differing: number;
  /** The pairs of the first that the second lacks (a token it does not have, or has under another id). */
  readonly missingFromSecond: number;
  /** Up to five of them: the token, its id in the first, and in the second (undefined: the second lacks it). */
  readonly examples: ReadonlyArray<{ readonly token: string; readonly first: number; readonly second?: number }>;
}

/** The difference of two vocabularies (first vs second). */
export function compareVocabularies(first: TokenizerVocabulary, second: TokenizerVocabulary): VocabularyDiff {
  let missingFromSecond = 0;
  const examples: Array<{ token: string; first: number; second?: number }> = [];
  for (const [token, id] of first.tokens) {
    const other = second.tokens.get(token);
    if (other === id) continue;
    missingFromSecond++;
    if (examples.length < 5) examples.push({ token, first: id, ...(other !== undefined ? { second: other } : {}) });
  }
  const shared = first.tokens.size - missingFromSecond;
  const onlySecond = second.tokens.size - shared;
  return { sizes: [first.tokens.size, second.tokens.size], differing: missingFromSecond + onlySecond, missingFromSecond, examples };
}
