import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkMultipleChoice } from './multiple-choice';

// The corpus the evaluation job's benchmarks.py runs too (training-images/trainer/tests/test_benchmarks.py).
const CORPUS = path.join(__dirname, '..', '..', 'test', 'fixtures', 'benchmarks');
const CASES: Array<{ file: string; items: number; errors: Array<{ line: number | null; code: string }>; note: string }> = JSON.parse(
  fs.readFileSync(path.join(CORPUS, 'cases.json'), 'utf8'),
).cases;

describe('checkMultipleChoice', () => {
  test('every file of the corpus is a case', () => {
    expect(CASES.map((c) => c.file).sort()).toEqual(fs.readdirSync(CORPUS).filter((f) => f.endsWith('.jsonl')).sort());
  });

  test.each(CASES.map((c) => [c.file, c] as const))('%s: the items and errors benchmarks.py finds', (file, expected) => {
    const report = checkMultipleChoice(fs.readFileSync(path.join(CORPUS, file)), file);
    expect({ items: report.items, errors: report.errors.map(({ line, code }) => ({ line, code })) }).toEqual({ items: expected.items, errors: expected.errors });
    for (const error of report.errors) {
      // each message says where (file:line) and what an item is
      expect(error.message.startsWith(error.line === null ? `${file} ` : `${file}:${error.line}: `)).toBe(true);
    }
  });

  test('counts questions, contexts and choices of a valid file', () => {
    expect(checkMultipleChoice(fs.readFileSync(path.join(CORPUS, 'good-questions.jsonl')), 'q')).toEqual({
      items: 3, questions: 3, contexts: 0, minChoices: 2, maxChoices: 4, errors: [],
    });
    expect(checkMultipleChoice(fs.readFileSync(path.join(CORPUS, 'good-contexts-bom-crlf.jsonl')), 'c')).toMatchObject({ items: 2, questions: 0, contexts: 2 });
  });

  test('lists every error of a file, and says the fix', () => {
    const text = ['{"question": "q", "choices": ["a"], "answer": 0}', '', '{"question": "q", "choices": ["a", "b"], "answer": 2}'].join('\n');
    const report = checkMultipleChoice(Buffer.from(text), 'mmlu.jsonl');
    expect(report.errors.map((e) => [e.line, e.code])).toEqual([[1, 'bad-choices'], [3, 'bad-answer']]);
    expect(report.errors[1].message).toBe(
      'mmlu.jsonl:3: answer must be the 0-based index of the right choice (0 to 1), got 2; expected {"question" or "context": str, "choices": [str, ...], "answer": index of the right choice}',
    );
  });

  test('a file that is not UTF-8 is refused as a whole', () => {
    expect(checkMultipleChoice(Buffer.from([0x7b, 0xff, 0x7d, 0x0a]), 'latin.jsonl').errors).toEqual([
      { line: null, code: 'invalid-utf8', message: 'latin.jsonl is not UTF-8 text; save it as UTF-8 JSON Lines' },
    ]);
  });
});
