import * as fs from 'node:fs';
import * as path from 'node:path';
import { DATASET_DIALECTS, DATASET_FORMATS, DatasetValidator } from '.';
import { checkRow, detectDialect, estimateTokens, formatOf, RowInvalid, rowHash } from './formats';
import type { Method } from '../methods';

const ROOT = path.join(__dirname, '..', '..');
const CORPUS = path.join(ROOT, 'test', 'fixtures', 'datasets');
const DEFINITION = JSON.parse(fs.readFileSync(path.join(ROOT, 'training-images/trainer/tuneyard_trainer/formats.json'), 'utf8'));

interface Case {
  file: string;
  method: Method;
  format: string | null;
  dialect: string | null;
  rows: number;
  errors: Array<{ line: number; code: string }>;
}
const cases: Case[] = JSON.parse(fs.readFileSync(path.join(CORPUS, 'cases.json'), 'utf8'));

const call = (id: string, name: string, args: object) => ({ id, type: 'function', function: { name, arguments: JSON.stringify(args) } });
const toolRow = (city: string, result: string) => ({
  messages: [
    { role: 'user', content: `Weather in ${city}?` },
    { role: 'assistant', content: null, tool_calls: [call('call_1', 'get_weather', { city })] },
    { role: 'tool', tool_call_id: 'call_1', content: result },
    { role: 'assistant', content: 'Done.' },
  ],
});

/** The internal form of a valid row, as the validator hashes and measures it. */
function internal(row: Record<string, unknown>): Record<string, unknown> {
  const dialect = detectDialect(row);
  if (dialect === null) throw new Error('no dialect');
  return checkRow(row, dialect);
}

function problem(row: Record<string, unknown>): RowInvalid {
  try {
    internal(row);
  } catch (err) {
    if (err instanceof RowInvalid) return err;
    throw err;
  }
  throw new Error('the row was valid');
}

describe('the one definition of the dialects (formats.json)', () => {
  test('lists the dialects the TypeScript types name, each mapped onto one of the six formats', () => {
    expect(Object.keys(DEFINITION.dialects).sort()).toEqual([...DATASET_DIALECTS].sort());
    for (const dialect of DATASET_DIALECTS) expect(DATASET_FORMATS).toContain(formatOf(dialect));
    expect(new Set(DEFINITION.detection.map((rule: { dialect: string }) => rule.dialect))).toEqual(new Set(DATASET_DIALECTS));
  });

  test('is shipped in the npm package beside the trainer, where the compiled validator imports it from', () => {
    const files: string[] = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).files;
    expect(files).toContain('dist/training-images/trainer/tuneyard_trainer/formats.json');
  });
});

describe('dialects over the shared corpus', () => {
  test.each(cases.map((c) => [`${c.file} for ${c.method}`, c] as const))('%s: format and dialect', (_name, c) => {
    // GIVEN a fixture WHEN validated THEN the report names its format and the dialect it was written in
    const validator = new DatasetValidator({ method: c.method });
    validator.push(new Uint8Array(fs.readFileSync(path.join(CORPUS, c.file))));
    const report = validator.end();
    expect({ format: report.format, dialect: report.dialect }).toEqual({ format: c.format, dialect: c.dialect });
  });

  test('every dialect has a valid fixture file and every error code a case', () => {
    const valid = cases.filter((c) => c.errors.length === 0).map((c) => c.dialect);
    expect(new Set(valid)).toEqual(new Set(DATASET_DIALECTS));
    expect(new Set(cases.flatMap((c) => c.errors.map((e) => e.code)))).toEqual(
      new Set([
        'invalid-utf8', 'invalid-json', 'not-object', 'unknown-format', 'mixed-format', 'missing-field', 'wrong-type',
        'empty-content', 'invalid-role', 'role-order', 'no-assistant', 'invalid-tool-call', 'invalid-weight',
        'unsupported-content', 'not-preference', 'preference-for-sft', 'identical-pair', 'empty-file',
      ]),
    );
  });
});

describe('the internal form', () => {
  test('ShareGPT, OpenAI chat with developer role and text parts, and plain messages map to the same messages', () => {
    // GIVEN one conversation in three dialects
    const plain = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi\nthere' }, { role: 'assistant', content: 'Hello' }] };
    const openai = {
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Hi' }, { type: 'text', text: 'there' }] },
        { role: 'assistant', content: 'Hello', weight: 1 },
      ],
    };
    const sharegpt = { system: 'Be brief.', conversations: [{ from: 'human', value: 'Hi\nthere' }, { from: 'gpt', value: 'Hello' }] };
    // THEN they have one internal form (but the weight), one hash and one token estimate
    expect(internal(sharegpt)).toEqual(internal(plain));
    expect(internal(openai)).toEqual({ messages: [...plain.messages.slice(0, 2), { role: 'assistant', content: 'Hello', weight: 1 }] });
    expect(rowHash(internal(sharegpt), 'chat')).toEqual(rowHash(internal(plain), 'chat'));
    expect(rowHash(internal(openai), 'chat')).toEqual(rowHash(internal(plain), 'chat'));
    expect(estimateTokens(internal(openai), 'chat')).toBe(estimateTokens(internal(plain), 'chat'));
  });

  test('ShareGPT function_call and observation turns and its tools map to OpenAI tool calls, tool messages and tools', () => {
    // GIVEN a ShareGPT row as LLaMA-Factory writes it (tools as a JSON string of bare function definitions)
    const fn = { name: 'get_weather', parameters: { type: 'object' } };
    const sharegpt = {
      conversations: [
        { from: 'human', value: 'Weather in Paris?' },
        { from: 'function_call', value: JSON.stringify({ name: 'get_weather', arguments: { city: 'Paris' } }) },
        { from: 'observation', value: '18 C' },
        { from: 'gpt', value: 'Done.' },
      ],
      tools: JSON.stringify([fn]),
    };
    // THEN it is the OpenAI row (call ids aside: they are not content), with one hash
    const openai = { ...toolRow('Paris', '18 C'), tools: [{ type: 'function', function: fn }] };
    const expected = internal(openai) as { messages: Array<Record<string, unknown>> };
    expected.messages = expected.messages.map(({ id: _id, tool_call_id: _callId, ...m }) => ({
      ...m,
      ...(m.tool_calls ? { tool_calls: (m.tool_calls as Array<Record<string, unknown>>).map(({ id: _i, ...c }) => c) } : {}),
    }));
    expect(internal(sharegpt)).toEqual(expected);
    expect(rowHash(internal(sharegpt), 'chat')).toEqual(rowHash(internal(openai), 'chat'));
  });

  test('OpenAI preference rows map to the TRL conversational pair they stand for', () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const openai = { input: { messages: [{ role: 'user', content: '2 + 2?' }], tools }, preferred_output: [{ role: 'assistant', content: '4' }], non_preferred_output: [{ role: 'assistant', content: '5' }] };
    const trl = { prompt: [{ role: 'user', content: '2 + 2?' }], chosen: [{ role: 'assistant', content: '4' }], rejected: [{ role: 'assistant', content: '5' }], tools };
    expect(internal(openai)).toEqual(internal(trl));
    expect(rowHash(internal(openai), 'preference-chat')).toEqual(rowHash(internal(trl), 'preference-chat'));
  });

  test('tool-call arguments are objects whether given as a JSON string (OpenAI) or an object (Hugging Face)', () => {
    const row = toolRow('Paris', '18 C');
    const objectArguments = JSON.parse(JSON.stringify(row));
    objectArguments.messages[1].tool_calls[0].function.arguments = { city: 'Paris' };
    expect((internal(row).messages as Array<{ tool_calls?: unknown }>)[1].tool_calls).toEqual([
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } },
    ]);
    expect(internal(objectArguments)).toEqual(internal(row));
  });
});

describe('row hashes and token estimates see tool calls, tool results and tools', () => {
  test('rows that differ only in a tool call, a tool result or the tools are not duplicates', () => {
    const base = toolRow('Paris', '18 C');
    const otherCall = toolRow('Rome', '18 C');
    const otherResult = toolRow('Paris', '25 C');
    const withTools = { ...toolRow('Paris', '18 C'), tools: [{ type: 'function', function: { name: 'get_weather' } }] };
    const otherId = JSON.parse(JSON.stringify(base).replace(/call_1/g, 'call_xyz'));
    const hashes = [base, otherCall, otherResult, withTools].map((r) => rowHash(internal(r), 'chat').join(':'));
    expect(new Set(hashes).size).toBe(4);
    // a call id is bookkeeping, not content: the same conversation with other ids is a duplicate
    expect(rowHash(internal(otherId), 'chat')).toEqual(rowHash(internal(base), 'chat'));
  });

  test('the validator counts a repeated tool-call row as a duplicate and not a row with another result', () => {
    const lines = [toolRow('Paris', '18 C'), toolRow('Paris', '18 C'), toolRow('Paris', '25 C')].map((r) => JSON.stringify(r)).join('\n');
    const validator = new DatasetValidator({ method: 'sft' });
    validator.push(Buffer.from(lines));
    const report = validator.end();
    expect(report.errors).toEqual([]);
    expect(report.duplicates.examples).toEqual([{ line: 2, firstLine: 1 }]);
  });

  test('token estimates grow with the arguments, the tool result and the tool definitions', () => {
    const short = estimateTokens(internal(toolRow('Paris', '18 C')), 'chat');
    expect(estimateTokens(internal(toolRow('P'.repeat(400), '18 C')), 'chat')).toBeGreaterThanOrEqual(short + 99);
    expect(estimateTokens(internal(toolRow('Paris', 'x'.repeat(400))), 'chat')).toBeGreaterThanOrEqual(short + 99);
    const tools = [{ type: 'function', function: { name: 'get_weather', description: 'd'.repeat(400) } }];
    expect(estimateTokens(internal({ ...toolRow('Paris', '18 C'), tools }), 'chat')).toBeGreaterThanOrEqual(short + 100);
  });
});

describe('messages that say what is wrong and where', () => {
  test('fails when tool-call arguments are not JSON, naming the message and call', () => {
    const row = toolRow('Paris', '18 C');
    (row.messages[1].tool_calls as Array<{ function: { arguments: string } }>)[0].function.arguments = '{"city": "Paris"';
    const err = problem(row);
    expect(err.code).toBe('invalid-tool-call');
    expect(err.message).toMatch(/^"messages\[1\]\.tool_calls\[0\]\.function\.arguments" is not valid JSON/);
  });

  test('fails when a weight is not 0 or 1, or is on a non-assistant message, naming the message index', () => {
    expect(problem({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello', weight: 0.5 }] }).message).toMatch(
      /"messages\[1\]\.weight" is 0\.5; use 0 .* or 1/,
    );
    expect(problem({ messages: [{ role: 'user', content: 'Hi', weight: 1 }, { role: 'assistant', content: 'Hello' }] }).message).toMatch(
      /messages\[0\] is a user message; only assistant messages take a weight/,
    );
  });

  test('fails on an image part with what to do', () => {
    const err = problem({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }, { role: 'assistant', content: 'A cat.' }] });
    expect(err.code).toBe('unsupported-content');
    expect(err.message).toMatch(/"messages\[0\]\.content\[0\]" is a "image_url" part; Tuneyard trains on text only/);
  });

  test('fails on a ShareGPT function_call turn that holds no call, saying what it must hold', () => {
    const err = problem({ conversations: [{ from: 'human', value: 'Hi' }, { from: 'function_call', value: '{"name": "f"}' }] });
    expect(err.code).toBe('invalid-tool-call');
    expect(err.message).toMatch(/^"conversations\[1\]\.value" is not a call with a "name" and "arguments"; a function_call turn holds/);
  });

  test('fails when a tool message answers no call, listing the open ones', () => {
    const row = toolRow('Paris', '18 C');
    row.messages[2].tool_call_id = 'call_2';
    expect(problem(row).message).toMatch(/"messages\[2\]\.tool_call_id" is "call_2", which answers no open call of messages\[1\] \(open: "call_1"\)/);
  });
});
