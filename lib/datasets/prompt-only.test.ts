import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { checkDatasetFiles, CheckDatasetOptions, datasetVerdict, DatasetValidator } from '.';
import { promptOnlyRowProblem } from './formats';

/**
 * Methods grpo and rloo train on prompt-only rows (rloo.py reads them with grpo.py's read_prompt_rows): the TypeScript rule (formats.ts promptOnlyRowProblem) against the trainer's
 * (grpo.py read_prompt_rows), fed the rows the trainer's tests accept and refuse (tests/test_grpo.py prompt_rows and
 * test_bad_configs_fail_before_weights_load), with the trainer's own messages.
 */
// its string literals joined where the source continues them on the next line
const GRPO_PY = fs.readFileSync(path.join(__dirname, '../../training-images/trainer/tuneyard_trainer/grpo.py'), 'utf8').replace(/"\s*\n\s*f?"/g, '');

const jsonl = (...rows: unknown[]) => Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const source = (bytes: Buffer) => ({ open: () => Readable.from([bytes]) });
const check = (train: Buffer, evalFile?: Buffer, options: CheckDatasetOptions = { method: 'grpo' }) =>
  checkDatasetFiles({ train: source(train), ...(evalFile ? { eval: source(evalFile) } : {}) }, options);

// test_grpo.py prompt_rows(): chats ending with the user's turn and plain prompts, with a reference field for the graders
const ACCEPTED = [
  { messages: [{ role: 'user', content: 'Translate to French: cat' }], reference: 'chat' },
  { prompt: 'Translate to French: dog', reference: 'chien' },
  { prompt: [{ role: 'system', content: 'Answer in French.' }, { role: 'user', content: 'house' }] },
];
// test_grpo.py's refused rows, and the other branches of read_prompt_rows
const REFUSED: Array<[unknown, string]> = [
  [{ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }, 'messages must end with a user message (the turn the model answers), not assistant; drop the answer: GRPO samples its own'],
  [{ text: 'no prompt' }, 'has neither "messages" (a chat ending with a user turn) nor "prompt"; GRPO trains on prompts only'],
  [{ prompt: '  ' }, 'prompt is empty'],
  [{ prompt: [] }, 'prompt must be a non-empty list of messages'],
  [{ messages: [{ role: 'user' }] }, 'messages[0] must be an object with a string role and a string content'],
  [[1], 'must be a JSON object'],
];

describe('prompt-only rows (method grpo)', () => {
  test('the rows grpo.py accepts pass, and those it refuses fail with its message', () => {
    for (const row of ACCEPTED) expect({ row, problem: promptOnlyRowProblem(row) }).toEqual({ row, problem: undefined });
    for (const [row, message] of REFUSED) expect({ row, problem: promptOnlyRowProblem(row) }).toEqual({ row, problem: message });
  });

  test('each message is grpo.py\'s own (its fixed text is in read_prompt_rows or _messages_problem)', () => {
    const fixed = (message: string) => message.replace(/^(messages|prompt)(\[0\])? /, '').replace(/, not assistant; /, ', not ');
    for (const [, message] of REFUSED) {
      for (const piece of fixed(message).split(/, not /)) expect({ piece, inGrpoPy: GRPO_PY.includes(piece.replace(/"/g, '\\"')) || GRPO_PY.includes(piece) }).toEqual({ piece, inGrpoPy: true });
    }
  });

  test('a training file of prompt-only rows passes for grpo, and fails for lora (no answers)', async () => {
    const train = jsonl(...ACCEPTED.slice(0, 2), { messages: [{ role: 'user', content: 'Translate to French: bird' }] });
    // the eval file keeps reference answers: the eval job evaluates the adapter like lora's
    const evalFile = jsonl({ messages: [{ role: 'user', content: 'Translate to French: fish' }, { role: 'assistant', content: 'poisson' }] });
    const grpo = await check(train, evalFile);
    expect(grpo.ok).toBe(true);
    expect(grpo.train.validRows).toBe(3);
    expect(grpo.train.errorCount).toBe(0);
    const lora = await check(train, evalFile, { method: 'lora' });
    expect(lora.ok).toBe(false);
  });

  test('a row with an answer is refused for grpo at its line, with the trainer\'s message and the fix', async () => {
    const train = jsonl(ACCEPTED[0], REFUSED[0][0], { prompt: 'ok' });
    const result = await check(train);
    expect(result.ok).toBe(false);
    expect(result.train.errorCount).toBe(1);
    expect(result.train.errors).toEqual([{ line: 2, code: 'not-prompt-only', message: `${REFUSED[0][1]} (methods grpo and rloo train on prompt-only rows)` }]);
    expect(result.train.errorGroups).toEqual([expect.objectContaining({ code: 'not-prompt-only', count: 1, lines: [2] })]);
  });

  test('lines that are not JSON objects stay errors for grpo; preference pairs are refused naming the method', async () => {
    const broken = await check(Buffer.from('{"prompt": "a"}\nnot json\n'));
    expect(broken.train.errors.map((e) => [e.line, e.code])).toEqual([[2, 'invalid-json']]);
    const pairs = await check(jsonl({ prompt: 'p', chosen: 'a', rejected: 'b' }));
    expect(pairs.ok).toBe(false);
    expect(pairs.train.errors[0]).toEqual(expect.objectContaining({ code: 'not-prompt-only', message: expect.stringMatching(/^method grpo trains on prompt-only rows .*preference pairs \(preference\)/) }));
  });

  test('a stored report from before grpo (no promptOnly) is refused with the fix, not passed', () => {
    const validator = new DatasetValidator();
    validator.push(jsonl(ACCEPTED[1]));
    const { promptOnly, ...old } = validator.end();
    expect(promptOnly).toEqual({ validRows: 1, errorCount: 0, errors: [] });
    const verdict = datasetVerdict({ train: old }, { method: 'grpo' });
    expect(verdict.ok).toBe(false);
    expect(verdict.train.errors[0].message).toMatch(/predates method grpo.*upload the dataset again/);
    expect(datasetVerdict({ train: old }, { method: 'rloo' }).ok).toBe(false);
  });

  test('rloo: the same rows as grpo (a training file of prompts passes, its eval file keeps answers), pairs refused naming rloo, answers refused at their line', async () => {
    const train = jsonl(...ACCEPTED);
    const evalFile = jsonl({ messages: [{ role: 'user', content: 'Translate to French: fish' }, { role: 'assistant', content: 'poisson' }] });
    const rloo = await check(train, evalFile, { method: 'rloo' });
    expect(rloo.ok).toBe(true);
    expect(rloo.train.validRows).toBe(ACCEPTED.length);
    expect(rloo.train.method).toBe('rloo');
    const pairs = await check(jsonl({ prompt: 'p', chosen: 'a', rejected: 'b' }), undefined, { method: 'rloo' });
    expect(pairs.ok).toBe(false);
    expect(pairs.train.errors[0]).toEqual(expect.objectContaining({ code: 'not-prompt-only', message: expect.stringMatching(/^method rloo trains on prompt-only rows .*preference pairs \(preference\).*or use method dpo$/) }));
    const answered = await check(jsonl(ACCEPTED[0], REFUSED[0][0]), undefined, { method: 'rloo' });
    expect(answered.ok).toBe(false);
    expect(answered.train.errors).toEqual([{ line: 2, code: 'not-prompt-only', message: `${REFUSED[0][1]} (methods grpo and rloo train on prompt-only rows)` }]);
  });
});
