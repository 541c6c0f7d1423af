/**
 * Multiple-choice benchmark files: the format the evaluation job scores by log-likelihood
 * (training-images/trainer/tuneyard_trainer/benchmarks.py), checked here with the same rules and error codes so that
 * `tuneyard stage-benchmark` refuses what the job would fail on. Both run the corpus in test/fixtures/benchmarks/.
 *
 * One item a line: `{"question" or "context": str, "choices": [str, ...], "answer": index of the right choice}`.
 * Lines are split at `\n` (a `\r` before it is white space), a UTF-8 byte order mark at the start is ignored, blank
 * lines are skipped, NaN and Infinity are not JSON.
 */

/** The `format` of a staged benchmark's manifest.json: not a training format, a RunRequest's benchmarkDatasets only. */
export const MULTIPLE_CHOICE_FORMAT = 'multiple-choice';

/** The rules an item can break (benchmarks.py's BenchmarkError codes), and a file that is not UTF-8. */
export type MultipleChoiceCode = 'invalid-json' | 'not-object' | 'no-context' | 'bad-choices' | 'bad-answer' | 'empty-file' | 'invalid-utf8';

export interface MultipleChoiceError {
  /** 1-based physical line; `null` for what concerns the whole file (empty-file, invalid-utf8). */
  readonly line: number | null;
  readonly code: MultipleChoiceCode;
  /** What is wrong, where (file:line) and the fix. */
  readonly message: string;
}

export interface MultipleChoiceReport {
  /** Valid items. */
  readonly items: number;
  /** Items asked as a question ("Question: ...\nAnswer:") and items continuing a context (HellaSwag-style). */
  readonly questions: number;
  readonly contexts: number;
  /** The fewest and most choices of an item (0 when there is none). */
  readonly minChoices: number;
  readonly maxChoices: number;
  /** Every error, in line order. */
  readonly errors: MultipleChoiceError[];
}

const FIX = 'expected {"question" or "context": str, "choices": [str, ...], "answer": index of the right choice}';

/** Checks one benchmark file's bytes; `name` (the file's name) goes into the messages, as `name:line`. */
export function checkMultipleChoice(bytes: Uint8Array, name: string): MultipleChoiceReport {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    const error: MultipleChoiceError = { line: null, code: 'invalid-utf8', message: `${name} is not UTF-8 text; save it as UTF-8 JSON Lines` };
    return { items: 0, questions: 0, contexts: 0, minChoices: 0, maxChoices: 0, errors: [error] };
  }
  const errors: MultipleChoiceError[] = [];
  let items = 0;
  let questions = 0;
  let minChoices = Infinity;
  let maxChoices = 0;
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${name}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      errors.push({ line: i + 1, code: 'invalid-json', message: `${where}: not JSON (${(e as Error).message}); each line must be one item` });
      return;
    }
    const problem = itemProblem(row, where);
    if (problem) {
      errors.push({ line: i + 1, ...problem });
      return;
    }
    const item = row as { question?: string; choices: string[] };
    items++;
    if (item.question !== undefined) questions++;
    minChoices = Math.min(minChoices, item.choices.length);
    maxChoices = Math.max(maxChoices, item.choices.length);
  });
  if (items === 0 && errors.length === 0) {
    errors.push({ line: null, code: 'empty-file', message: `${name} holds no items; stage a JSONL file of multiple-choice items` });
  }
  return { items, questions, contexts: items - questions, minChoices: items ? minChoices : 0, maxChoices, errors };
}

/** benchmarks.py's item_of: the first rule the row breaks, or undefined. */
function itemProblem(row: unknown, where: string): { code: MultipleChoiceCode; message: string } | undefined {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) return { code: 'not-object', message: `${where}: an item must be a JSON object; ${FIX}` };
  const r = row as Record<string, unknown>;
  const keys = (['question', 'context'] as const).filter((k) => Object.prototype.hasOwnProperty.call(r, k));
  if (keys.length !== 1 || typeof r[keys[0]] !== 'string') {
    return { code: 'no-context', message: `${where}: an item needs exactly one of question or context, a string; ${FIX}` };
  }
  const choices = r.choices;
  if (!Array.isArray(choices) || choices.length < 2 || !choices.every((c) => typeof c === 'string' && c !== '')) {
    return { code: 'bad-choices', message: `${where}: choices must be a list of at least 2 non-empty strings; ${FIX}` };
  }
  const answer = r.answer;
  if (typeof answer !== 'number' || !Number.isInteger(answer) || answer < 0 || answer >= choices.length) {
    return {
      code: 'bad-answer',
      message: `${where}: answer must be the 0-based index of the right choice (0 to ${choices.length - 1}), got ${answer === undefined ? 'nothing' : JSON.stringify(answer)}; ${FIX}`,
    };
  }
  return undefined;
}
