import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTokenizers, PythonTokenizers } from '../test/support/tokenizers';
import { compareVocabularies, parseTokenizerVocabulary, TokenizerFileError, TokenizerVocabulary, vocabularyFingerprint } from './tokenizer-vocabulary';

let dir: string;
let python: PythonTokenizers;
const read = (name: string): TokenizerVocabulary => parseTokenizerVocabulary(fs.readFileSync(path.join(dir, name, 'tokenizer.json')));

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizers-'));
  python = makeTokenizers(dir);
}, 120_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a tokenizer.json read as Hugging Face get_vocab() reads it', () => {
  test('every case: the size and fingerprint of AutoTokenizer.get_vocab() (and of the tokenizers library)', () => {
    // GIVEN tokenizers built by the Python libraries: BPE, WordPiece and Unigram, each with added and special tokens
    expect(Object.keys(python.cases).sort()).toEqual(['bpe', 'bpe-chatml', 'bpe-other', 'bpe-reformatted', 'unigram', 'wordpiece', 'wordpiece-one-id']);
    expect(new Set(Object.values(python.cases).map((c) => c.model_type))).toEqual(new Set(['BPE', 'WordPiece', 'Unigram']));
    for (const [name, expected] of Object.entries(python.cases)) {
      // WHEN read here
      const vocabulary = read(name);
      // THEN the same map as Python's
      expect({ name, modelType: vocabulary.modelType, size: vocabulary.tokens.size, fingerprint: vocabularyFingerprint(vocabulary) }).toEqual({
        name,
        modelType: expected.model_type,
        size: expected.size,
        fingerprint: expected.fingerprint,
      });
      expect([expected.tokenizers_size, expected.tokenizers_fingerprint]).toEqual([expected.size, expected.fingerprint]);
    }
  });

  test('every pair: equal where Python finds them equal, and the trainer\'s count of differing (token, id) pairs', () => {
    expect(python.pairs.length).toBe(21);
    for (const pair of python.pairs) {
      const diff = compareVocabularies(read(pair.first), read(pair.second));
      expect({ ...pair, equal: diff.differing === 0, differing: diff.differing }).toEqual(pair);
    }
  });

  test('the same vocabulary in another file (a normalizer, compact formatting) is equal; one token under another id is not', () => {
    expect(fs.readFileSync(path.join(dir, 'bpe', 'tokenizer.json'))).not.toEqual(fs.readFileSync(path.join(dir, 'bpe-reformatted', 'tokenizer.json')));
    expect(compareVocabularies(read('bpe'), read('bpe-reformatted')).differing).toBe(0);
    const moved = compareVocabularies(read('wordpiece'), read('wordpiece-one-id'));
    const size = python.cases.wordpiece.size;
    expect(moved).toMatchObject({ sizes: [size, size], differing: 2, missingFromSecond: 1 });
    expect(moved.examples).toEqual([{ token: expect.stringMatching(/^##/), first: expect.any(Number), second: size }]);
  });

  test('a chat template\'s special tokens added on top keep every base pair (what the trainer adds for chatTemplate)', () => {
    const added = compareVocabularies(read('bpe'), read('bpe-chatml'));
    const size = python.cases.bpe.size;
    expect(added).toMatchObject({ sizes: [size, size + 2], differing: 2, missingFromSecond: 0, examples: [] });
    expect([read('bpe-chatml').tokens.get('<|im_start|>'), read('bpe-chatml').tokens.get('<|im_end|>')]).toEqual([size, size + 1]);
  });

  test('fails when the file holds no vocabulary, naming the file and what is missing', () => {
    expect(() => parseTokenizerVocabulary('{"model": {"type": "BPE"}}', 's3://b/m/tokenizer.json')).toThrow(TokenizerFileError);
    expect(() => parseTokenizerVocabulary('{"model": {"type": "BPE"}}', 's3://b/m/tokenizer.json')).toThrow(/^s3:\/\/b\/m\/tokenizer\.json: model \(type BPE\) has no vocab/);
    expect(() => parseTokenizerVocabulary('{"model": {"vocab": {"a": "1"}}}')).toThrow(/model\.vocab\["a"\] is "1", not an integer id/);
    expect(() => parseTokenizerVocabulary('not json')).toThrow(/^tokenizer\.json is not JSON/);
    expect(() => parseTokenizerVocabulary('{"model": {"vocab": [["a", 0.0], "b"]}}')).toThrow(/model\.vocab\[1\] is not a \[piece, score\] pair/);
  });
});
