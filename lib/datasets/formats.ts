/**
 * Dataset formats and the per-row rules: the one TypeScript definition, used by `tuneyard validate`,
 * the ValidateDataset Lambda and their tests. The Python trainer (`tuneyard_trainer/data.py`)
 * implements the same rules; both read the dialects (the shapes users bring: OpenAI chat and
 * preference files, ShareGPT, ...) and the internal format each maps onto from one definition,
 * `training-images/trainer/tuneyard_trainer/formats.json`, and both are tested against the shared
 * corpus in `test/fixtures/datasets/` (rules: its README.md).
 */

import definition from '../../training-images/trainer/tuneyard_trainer/formats.json';
import { RowHasher } from './row-hashes';
import { isOnlineRl, type Method } from '../methods';

/** The formats of a JSONL dataset: the internal form every row is mapped to, whatever dialect it came in. */
export const DATASET_FORMATS = ['chat', 'prompt-completion', 'alpaca', 'text', 'preference', 'preference-chat'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/**
 * The dialects a row may come in, decided from its keys (`formats.json`): `messages` (OpenAI's chat format, with
 * tools), `sharegpt` (`conversations`), `openai-preference` (`input`, `preferred_output`, `non_preferred_output`),
 * `preference-chat` (TRL's conversational `prompt`/`chosen`/`rejected`), and one of each other format.
 */
export const DATASET_DIALECTS = [
  'messages',
  'sharegpt',
  'openai-preference',
  'preference-chat',
  'preference',
  'alpaca',
  'prompt-completion',
  'text',
] as const;
export type DatasetDialect = (typeof DATASET_DIALECTS)[number];

/** The formats that hold preference pairs (the only ones `dpo` accepts). */
export const PREFERENCE_FORMATS: readonly DatasetFormat[] = ['preference', 'preference-chat'];

/** The error codes of the shared corpus (test/fixtures/datasets/README.md), plus `line-too-long`. */
export type DatasetErrorCode =
  | 'invalid-utf8'
  | 'invalid-json'
  | 'not-object'
  | 'unknown-format'
  | 'mixed-format'
  | 'missing-field'
  | 'wrong-type'
  | 'empty-content'
  | 'invalid-role'
  | 'role-order'
  | 'no-assistant'
  | 'invalid-tool-call'
  | 'invalid-weight'
  | 'unsupported-content'
  | 'not-preference'
  | 'preference-for-sft'
  | 'identical-pair'
  /** Methods grpo and rloo: a row that is not prompt-only ({@link promptOnlyRowProblem}). */
  | 'not-prompt-only'
  | 'empty-file'
  /** TypeScript only: a line longer than the validator's `maxLineBytes` (the row cannot be read in bounded memory). */
  | 'line-too-long';

/** One problem, at a 1-based physical line number. */
export interface DatasetError {
  readonly line: number;
  readonly code: DatasetErrorCode;
  /** What is wrong and how to fix it. */
  readonly message: string;
}

type JsonObject = Record<string, unknown>;

/** A role of the internal form (`developer` is `system`, ShareGPT's `human` is `user`, ...). */
export type Role = 'system' | 'user' | 'assistant' | 'tool';

/** A tool call of the internal form: OpenAI's, with the arguments as a JSON object (what chat templates expect). */
export interface ToolCall {
  readonly id?: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: JsonObject };
}

/** A message of the internal form every conversation dialect maps to: OpenAI's chat message with text content. */
export interface Message {
  readonly role: Role;
  /** The text (content parts joined with `\n`, as vLLM's OpenAI server joins them); '' for a tool call without text. */
  readonly content: string;
  readonly tool_calls?: ToolCall[];
  readonly tool_call_id?: string;
  /** 0: context only, no loss on this (assistant) message. */
  readonly weight?: 0 | 1;
}

interface ConversationShape {
  readonly role: string;
  readonly content: string;
  readonly roles: Record<string, Role>;
  /** Roles of assistant turns whose content holds the tool call(s) as JSON (ShareGPT's `function_call`). */
  readonly callRoles?: string[];
  readonly refusedRoles: Record<string, string>;
}

interface Definition {
  readonly detection: ReadonlyArray<{ readonly dialect: DatasetDialect; readonly anyKey: string[]; readonly arrayKey?: string }>;
  readonly dialects: Record<
    DatasetDialect,
    {
      readonly format: DatasetFormat;
      readonly conversation?: string;
      readonly fields?: Record<string, string>;
      /** Tools given as bare function definitions, or a JSON string of them (ShareGPT as LLaMA-Factory writes it). */
      readonly functionTools?: boolean;
    }
  >;
  readonly conversations: Record<string, ConversationShape>;
  readonly contentParts: Record<string, string>;
}

const DEFINITION = definition as unknown as Definition;

/** The format a dialect maps onto. */
export function formatOf(dialect: DatasetDialect): DatasetFormat {
  return DEFINITION.dialects[dialect].format;
}

/** A row's problem, thrown inside the checks and turned into a {@link DatasetError} by the caller. */
export class RowInvalid extends Error {
  constructor(
    public readonly code: DatasetErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function has(row: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(row, key);
}

/** `table[key]` for an own key only (a role named "constructor" is not a role). */
function lookup<T>(table: Record<string, T>, key: string): T | undefined {
  return has(table, key) ? table[key] : undefined;
}

/** The dialect a JSON object is written in, decided by its keys (extra keys are ignored); null when none. */
export function detectDialect(row: JsonObject): DatasetDialect | null {
  for (const rule of DEFINITION.detection) {
    if (!rule.anyKey.some((key) => has(row, key))) continue;
    if (rule.arrayKey !== undefined && !Array.isArray(row[rule.arrayKey])) continue;
    return rule.dialect;
  }
  return null;
}

/** The format a JSON object belongs to, decided by its keys (extra keys are ignored); null when none. */
export function detectFormat(row: JsonObject): DatasetFormat | null {
  const dialect = detectDialect(row);
  return dialect === null ? null : formatOf(dialect);
}

/** True when `value` is only spaces, tabs, `\r` and `\n` (the corpus' "empty"). */
export function isBlank(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
}

export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value === 'object' ? 'object' : typeof value;
}

function checkString(row: JsonObject, key: string, required = true, allowEmpty = false): void {
  if (!has(row, key)) {
    if (required) throw new RowInvalid('missing-field', `missing field "${key}"; add it as a non-empty string`);
    return;
  }
  const value = row[key];
  if (typeof value !== 'string') {
    throw new RowInvalid('wrong-type', `"${key}" must be a string, got ${jsonType(value)}`);
  }
  if (!allowEmpty && isBlank(value)) throw new RowInvalid('empty-content', `"${key}" is empty; give it some text or drop the row`);
}

/**
 * The value at a dotted field path (`input.messages`), undefined when it is absent; a parent that is absent
 * (`missing-field`) or not an object (`wrong-type`) is an error.
 */
function fieldAt(row: JsonObject, path: string): unknown {
  if (path.indexOf('.') === -1) return has(row, path) ? row[path] : undefined;
  const keys = path.split('.');
  let value: unknown = row;
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) {
      const at = keys.slice(0, i).join('.');
      if (value === undefined) throw new RowInvalid('missing-field', `missing field "${at}"; it holds "${path}"`);
      if (!isJsonObject(value)) throw new RowInvalid('wrong-type', `"${at}" must be an object, got ${jsonType(value)}`);
    }
    value = has(value as JsonObject, keys[i]) ? (value as JsonObject)[keys[i]] : undefined;
  }
  return value;
}

/** The text of OpenAI content parts; only text parts (Tuneyard trains text models). */
function partsText(parts: unknown[], at: string): string {
  const texts: string[] = [];
  for (let j = 0; j < parts.length; j++) {
    const part = parts[j];
    const pat = `${at}[${j}]`;
    if (!isJsonObject(part)) throw new RowInvalid('wrong-type', `"${pat}" must be a content part like {"type":"text","text":"..."}, got ${jsonType(part)}`);
    if (!has(part, 'type')) throw new RowInvalid('missing-field', `missing field "${pat}.type"; a content part is {"type":"text","text":"..."}`);
    if (typeof part.type !== 'string') throw new RowInvalid('wrong-type', `"${pat}.type" must be a string, got ${jsonType(part.type)}`);
    const key = lookup(DEFINITION.contentParts, part.type);
    if (key === undefined) {
      throw new RowInvalid(
        'unsupported-content',
        `"${pat}" is a ${JSON.stringify(part.type)} part; Tuneyard trains on text only: give the message as text parts or a string, or drop the row`,
      );
    }
    if (!has(part, key)) throw new RowInvalid('missing-field', `missing field "${pat}.${key}"`);
    if (typeof part[key] !== 'string') throw new RowInvalid('wrong-type', `"${pat}.${key}" must be a string, got ${jsonType(part[key])}`);
    texts.push(part[key] as string);
  }
  return texts.join('\n');
}

function checkToolCalls(value: unknown, at: string): ToolCall[] {
  if (!Array.isArray(value)) {
    throw new RowInvalid('wrong-type', `"${at}" must be an array of {"id","type":"function","function":{"name","arguments"}} calls, got ${jsonType(value)}`);
  }
  if (value.length === 0) throw new RowInvalid('invalid-tool-call', `"${at}" is empty; give at least one call or drop the key`);
  const calls: ToolCall[] = [];
  for (let j = 0; j < value.length; j++) {
    const call = value[j];
    const cat = `${at}[${j}]`;
    if (!isJsonObject(call)) throw new RowInvalid('wrong-type', `"${cat}" must be an object {"id","type":"function","function":{"name","arguments"}}, got ${jsonType(call)}`);
    if (has(call, 'id') && typeof call.id !== 'string') throw new RowInvalid('wrong-type', `"${cat}.id" must be a string, got ${jsonType(call.id)}`);
    if (has(call, 'id') && calls.some((c) => c.id === call.id)) {
      throw new RowInvalid('invalid-tool-call', `"${cat}.id" ${JSON.stringify(call.id)} is used by an earlier call of the message; give each call its own id`);
    }
    if (has(call, 'type') && call.type !== 'function') {
      throw new RowInvalid('invalid-tool-call', `"${cat}.type" is ${JSON.stringify(call.type)}; only "function" calls are supported`);
    }
    if (!has(call, 'function')) throw new RowInvalid('missing-field', `missing field "${cat}.function"; a call is {"id","type":"function","function":{"name","arguments"}}`);
    const fn = call.function;
    if (!isJsonObject(fn)) throw new RowInvalid('wrong-type', `"${cat}.function" must be an object {"name","arguments"}, got ${jsonType(fn)}`);
    if (!has(fn, 'name')) throw new RowInvalid('missing-field', `missing field "${cat}.function.name"`);
    if (typeof fn.name !== 'string') throw new RowInvalid('wrong-type', `"${cat}.function.name" must be a string, got ${jsonType(fn.name)}`);
    if (isBlank(fn.name)) throw new RowInvalid('empty-content', `"${cat}.function.name" is empty; name the function called`);
    if (!has(fn, 'arguments')) throw new RowInvalid('missing-field', `missing field "${cat}.function.arguments"; give "{}" for a call without arguments`);
    calls.push({
      ...(has(call, 'id') ? { id: call.id as string } : {}),
      type: 'function',
      function: { name: fn.name, arguments: toolArguments(fn.arguments, `${cat}.function.arguments`) },
    });
  }
  return calls;
}

/** Arguments as OpenAI gives them (a string holding a JSON object) or as Hugging Face datasets do (the object). */
function toolArguments(value: unknown, at: string): JsonObject {
  if (isJsonObject(value)) return value;
  if (typeof value !== 'string') throw new RowInvalid('wrong-type', `"${at}" must be a string holding a JSON object (or the object), got ${jsonType(value)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new RowInvalid('invalid-tool-call', `"${at}" is not valid JSON (${(err as Error).message}); give the arguments as a JSON object, e.g. "{\\"city\\": \\"Paris\\"}"`);
  }
  if (!isJsonObject(parsed)) throw new RowInvalid('invalid-tool-call', `"${at}" holds a JSON ${jsonType(parsed)}; the arguments must be a JSON object, e.g. "{\\"city\\": \\"Paris\\"}"`);
  return parsed;
}

/** ShareGPT's `function_call` turn: its value holds the call, or a list of calls, as JSON `{"name", "arguments"}`. */
function encodedCalls(text: string, at: string): ToolCall[] {
  const shape = 'a function_call turn holds {"name": "...", "arguments": {...}} (or a list of them) as JSON';
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RowInvalid('invalid-tool-call', `"${at}" is not valid JSON (${(err as Error).message}); ${shape}`);
  }
  const list = Array.isArray(parsed) ? parsed : [parsed];
  if (list.length === 0) throw new RowInvalid('invalid-tool-call', `"${at}" holds no call; ${shape}`);
  return list.map((call, j) => {
    const cat = Array.isArray(parsed) ? `${at}[${j}]` : at;
    if (!isJsonObject(call) || typeof call.name !== 'string' || isBlank(call.name) || !has(call, 'arguments')) {
      throw new RowInvalid('invalid-tool-call', `"${cat}" is not a call with a "name" and "arguments"; ${shape}`);
    }
    return { type: 'function', function: { name: call.name, arguments: toolArguments(call.arguments, `${cat}.arguments`) } };
  });
}

/** The name of the message being checked, in error messages (a character no field name holds). */
const HERE = '\u0000';

/**
 * Checks one message and returns it in the internal form. Its errors name it {@link HERE}, which
 * {@link checkMessages} replaces with its field name (`messages[2]`): building that name for every message of every
 * row costs more than the rest of the checks.
 */
function checkMessage(value: unknown, shape: ConversationShape): Message {
  const at = HERE;
  if (!isJsonObject(value)) throw new RowInvalid('wrong-type', `"${at}" must be an object with "${shape.role}" and "${shape.content}", got ${jsonType(value)}`);
  const calls = has(value, 'tool_calls') && value.tool_calls !== null ? value.tool_calls : undefined;
  if (!has(value, shape.role)) throw new RowInvalid('missing-field', `missing field "${at}.${shape.role}"; every message needs "${shape.role}" and "${shape.content}"`);
  if (calls === undefined && !has(value, shape.content)) {
    throw new RowInvalid('missing-field', `missing field "${at}.${shape.content}"; every message needs "${shape.role}" and "${shape.content}" (only an assistant message with "tool_calls" may leave it out)`);
  }
  const role = value[shape.role];
  if (typeof role !== 'string') throw new RowInvalid('wrong-type', `"${at}.${shape.role}" must be a string, got ${jsonType(role)}`);
  const content = value[shape.content];
  if (typeof content !== 'string' && !Array.isArray(content) && !(calls !== undefined && (content === undefined || content === null))) {
    throw new RowInvalid(
      'wrong-type',
      `"${at}.${shape.content}" must be a string or an array of text parts, got ${jsonType(content)}` +
        (content === null ? ' (null content is for assistant messages with "tool_calls")' : ''),
    );
  }
  const callRole = !has(shape.roles, role) && shape.callRoles !== undefined && shape.callRoles.includes(role);
  const internal = callRole ? 'assistant' : lookup(shape.roles, role);
  if (internal === undefined) {
    throw new RowInvalid(
      'invalid-role',
      lookup(shape.refusedRoles, role) ?? `"${at}.${shape.role}" is ${JSON.stringify(role)}; use one of ${Object.keys(shape.roles).join(', ')} (lower case)`,
    );
  }
  const text = typeof content === 'string' ? content : Array.isArray(content) ? partsText(content, `${at}.${shape.content}`) : '';
  const message: { -readonly [K in keyof Message]: Message[K] } = { role: internal, content: text };
  if (callRole) {
    message.content = '';
    message.tool_calls = encodedCalls(text, `${at}.${shape.content}`);
  } else if (calls !== undefined) {
    if (internal !== 'assistant') throw new RowInvalid('invalid-tool-call', `"${at}" is a ${role} message with "tool_calls"; only assistant messages call tools`);
    message.tool_calls = checkToolCalls(calls, `${at}.tool_calls`);
  } else if (isBlank(text)) {
    throw new RowInvalid('empty-content', `"${at}.${shape.content}" is empty; give it some text or drop the message`);
  }
  if (internal === 'tool' && has(value, 'tool_call_id')) {
    if (typeof value.tool_call_id !== 'string') throw new RowInvalid('wrong-type', `"${at}.tool_call_id" must be a string, got ${jsonType(value.tool_call_id)}`);
    message.tool_call_id = value.tool_call_id;
  }
  if (has(value, 'weight')) {
    if (internal !== 'assistant') {
      throw new RowInvalid('invalid-weight', `"${at}.weight": message ${at} is a ${role} message; only assistant messages take a weight (drop it)`);
    }
    if (value.weight !== 0 && value.weight !== 1) {
      throw new RowInvalid('invalid-weight', `"${at}.weight" is ${JSON.stringify(value.weight)}; use 0 (context only, not trained on) or 1 (trained on, the default)`);
    }
    message.weight = value.weight;
  }
  return message;
}

/** Checks every message of a conversation (in the given dialect's keys); returns them in the internal form. */
function checkMessages(value: unknown, where: string, shape: ConversationShape): Message[] {
  if (!Array.isArray(value)) {
    throw new RowInvalid('wrong-type', `"${where}" must be an array of {"${shape.role}","${shape.content}"} messages, got ${jsonType(value)}`);
  }
  const messages: Message[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    try {
      messages[i] = checkMessage(value[i], shape);
    } catch (err) {
      if (!(err instanceof RowInvalid)) throw err;
      throw new RowInvalid(err.code, err.message.split(HERE).join(`${where}[${i}]`));
    }
  }
  return messages;
}

const ORDER =
  'an optional system message first, then user and assistant alternating, starting with user; ' +
  'an assistant message with tool_calls is followed by one tool message per call, then an assistant message';

/**
 * An optional leading system message, then user/assistant alternating, starting with user; after an assistant
 * message with tool calls, one tool message per call (matched by `tool_call_id`, else in order), then assistant.
 * Returns the role the next message would need.
 */
function checkTurnOrder(messages: Message[], where: string): Role {
  let expected: Role = 'user';
  let open: ToolCall[] = [];
  let callsAt = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    if (i === 0 && m.role === 'system') continue;
    if (m.role !== expected) {
      throw new RowInvalid('role-order', `"${where}": expected a ${expected} message at position ${i}, got ${m.role} (${ORDER})`);
    }
    if (m.role === 'user') {
      expected = 'assistant';
    } else if (m.role === 'assistant') {
      open = m.tool_calls ? [...m.tool_calls] : [];
      callsAt = i;
      expected = m.tool_calls ? 'tool' : 'user';
    } else if (m.role === 'tool') {
      const answered = m.tool_call_id === undefined ? 0 : open.findIndex((c) => c.id === m.tool_call_id);
      if (answered === -1) {
        throw new RowInvalid(
          'invalid-tool-call',
          `"${where}[${i}].tool_call_id" is ${JSON.stringify(m.tool_call_id)}, which answers no open call of ${where}[${callsAt}] ` +
            `(open: ${open.map((c) => JSON.stringify(c.id ?? null)).join(', ')}); use the "id" of the call it answers`,
        );
      }
      open.splice(answered, 1);
      expected = open.length > 0 ? 'tool' : 'assistant';
    }
  }
  return expected;
}

function checkTools(value: unknown, at: string, functions = false): JsonObject[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (functions) {
    // Bare function definitions, or a JSON string of them (ShareGPT as LLaMA-Factory writes it; "" for none).
    if (typeof value === 'string') {
      if (isBlank(value)) return undefined;
      try {
        value = JSON.parse(value);
      } catch (err) {
        throw new RowInvalid('invalid-tool-call', `"${at}" is not valid JSON (${(err as Error).message}); give a list of function definitions`);
      }
    }
    if (Array.isArray(value)) value = value.map((tool) => (isJsonObject(tool) && !has(tool, 'function') ? { type: 'function', function: tool } : tool));
  }
  if (!Array.isArray(value)) throw new RowInvalid('wrong-type', `"${at}" must be an array of {"type":"function","function":{"name","description","parameters"}} tools, got ${jsonType(value)}`);
  for (let j = 0; j < value.length; j++) {
    const tool = value[j];
    const tat = `${at}[${j}]`;
    if (!isJsonObject(tool)) throw new RowInvalid('wrong-type', `"${tat}" must be an object {"type":"function","function":{...}}, got ${jsonType(tool)}`);
    if (has(tool, 'type') && tool.type !== 'function') throw new RowInvalid('invalid-tool-call', `"${tat}.type" is ${JSON.stringify(tool.type)}; only "function" tools are supported`);
    if (!has(tool, 'function')) throw new RowInvalid('missing-field', `missing field "${tat}.function"; a tool is {"type":"function","function":{"name","description","parameters"}}`);
    const fn = tool.function;
    if (!isJsonObject(fn)) throw new RowInvalid('wrong-type', `"${tat}.function" must be an object, got ${jsonType(fn)}`);
    if (!has(fn, 'name')) throw new RowInvalid('missing-field', `missing field "${tat}.function.name"`);
    if (typeof fn.name !== 'string') throw new RowInvalid('wrong-type', `"${tat}.function.name" must be a string, got ${jsonType(fn.name)}`);
    if (isBlank(fn.name)) throw new RowInvalid('empty-content', `"${tat}.function.name" is empty; name the function`);
    if (has(fn, 'parameters') && !isJsonObject(fn.parameters)) {
      throw new RowInvalid('wrong-type', `"${tat}.function.parameters" must be a JSON Schema object, got ${jsonType(fn.parameters)}`);
    }
  }
  return value as JsonObject[];
}

function shapeOf(dialect: DatasetDialect): ConversationShape {
  return DEFINITION.conversations[DEFINITION.dialects[dialect].conversation as string];
}

function fieldsOf(dialect: DatasetDialect): Record<string, string> {
  return DEFINITION.dialects[dialect].fields as Record<string, string>;
}

function checkChat(row: JsonObject, dialect: DatasetDialect): JsonObject {
  const shape = shapeOf(dialect);
  const fields = fieldsOf(dialect);
  let system: Message[] = [];
  if (fields.system !== undefined && has(row, fields.system)) {
    const value = row[fields.system];
    if (typeof value !== 'string') throw new RowInvalid('wrong-type', `"${fields.system}" must be a string, got ${jsonType(value)}`);
    if (!isBlank(value)) system = [{ role: 'system', content: value }];
  }
  const value = fieldAt(row, fields.messages);
  if (value === undefined) throw new RowInvalid('missing-field', `missing field "${fields.messages}"`);
  const messages = system.concat(checkMessages(value, fields.messages, shape));
  checkTurnOrder(messages, fields.messages);
  if (messages.length === 0 || messages[messages.length - 1].role !== 'assistant') {
    throw new RowInvalid(
      'no-assistant',
      `"${fields.messages}" must end with an assistant message (the response the model learns); add one or drop the row`,
    );
  }
  const tools = fields.tools === undefined ? undefined : checkTools(fieldAt(row, fields.tools), fields.tools, DEFINITION.dialects[dialect].functionTools);
  return tools === undefined ? { messages } : { messages, tools };
}

function pairKey(value: unknown): string {
  if (typeof value === 'string') return value;
  return JSON.stringify((value as Message[]).map((m) => [m.role, m.content, m.tool_calls?.map((c) => c.function) ?? null]));
}

function checkPreference(row: JsonObject): JsonObject {
  if (!has(row, 'prompt')) throw new RowInvalid('missing-field', 'missing field "prompt"; preference rows need prompt, chosen and rejected');
  checkString(row, 'prompt');
  for (const key of ['chosen', 'rejected']) {
    if (!has(row, key)) throw new RowInvalid('missing-field', `missing field "${key}"; preference rows need prompt, chosen and rejected`);
    checkString(row, key);
  }
  if (row.chosen === row.rejected) {
    throw new RowInvalid('identical-pair', '"chosen" and "rejected" are identical, so the pair teaches nothing; fix or drop the row');
  }
  return row;
}

function checkPreferenceChat(row: JsonObject, dialect: DatasetDialect): JsonObject {
  const shape = shapeOf(dialect);
  const fields = fieldsOf(dialect);
  const needs = `preference rows need ${fields.prompt}, ${fields.chosen} and ${fields.rejected}`;
  const promptValue = fieldAt(row, fields.prompt);
  if (promptValue === undefined) throw new RowInvalid('missing-field', `missing field "${fields.prompt}"; ${needs}`);
  const prompt = checkMessages(promptValue, fields.prompt, shape);
  if (checkTurnOrder(prompt, fields.prompt) !== 'assistant') {
    throw new RowInvalid(
      'role-order',
      `"${fields.prompt}" must end with a user message, or with the tool results of the last assistant message's calls (the turn that ${fields.chosen} and ${fields.rejected} answer)`,
    );
  }
  const tools = checkTools(fieldAt(row, fields.tools), fields.tools);
  const responses: Message[][] = [];
  for (const key of [fields.chosen, fields.rejected]) {
    if (!has(row, key)) throw new RowInvalid('missing-field', `missing field "${key}"; ${needs}`);
    const messages = checkMessages(row[key], key, shape);
    if (messages.length === 0) throw new RowInvalid('no-assistant', `"${key}" must hold at least one assistant message`);
    if (messages.some((m) => m.role !== 'assistant')) throw new RowInvalid('role-order', `"${key}" must hold assistant messages only`);
    responses.push(messages);
  }
  const [chosen, rejected] = responses;
  if (pairKey(chosen) === pairKey(rejected)) {
    throw new RowInvalid('identical-pair', `"${fields.chosen}" and "${fields.rejected}" are identical, so the pair teaches nothing; fix or drop the row`);
  }
  return tools === undefined ? { prompt, chosen, rejected } : { prompt, chosen, rejected, tools };
}

/**
 * Checks a row of a known dialect; throws {@link RowInvalid} with the row's first problem. Returns the row in the
 * internal form of its format (chat: `{messages, tools?}`; preference-chat: `{prompt, chosen, rejected, tools?}`, with
 * {@link Message}s; the other formats: the row itself), which {@link rowHash} and {@link estimateTokens} read.
 */
export function checkRow(row: JsonObject, dialect: DatasetDialect): JsonObject {
  switch (formatOf(dialect)) {
    case 'chat':
      return checkChat(row, dialect);
    case 'prompt-completion':
      checkString(row, 'prompt');
      checkString(row, 'completion');
      return row;
    case 'alpaca':
      checkString(row, 'instruction');
      checkString(row, 'input', false, true);
      checkString(row, 'output');
      return row;
    case 'text':
      checkString(row, 'text');
      return row;
    case 'preference':
      return checkPreference(row);
    case 'preference-chat':
      return checkPreferenceChat(row, dialect);
  }
}

/**
 * The hash of a valid row's canonical form (its internal form, {@link checkRow}): the format and the fields the
 * trainer uses, in a fixed order (the dialect, ids, tool call ids, metadata, key order and JSON spacing do not make two
 * rows differ; tool calls, tool results and tool definitions do). Used for the duplicate and contamination checks.
 */
export function rowHash(row: JsonObject, format: DatasetFormat): [number, number] {
  const h = new RowHasher().add(format);
  switch (format) {
    case 'chat':
      addMessages(h, row.messages);
      addTools(h, row.tools);
      break;
    case 'prompt-completion':
      h.add(row.prompt as string).add(row.completion as string);
      break;
    case 'alpaca':
      h.add(row.instruction as string).add((row.input as string | undefined) ?? '').add(row.output as string);
      break;
    case 'text':
      h.add(row.text as string);
      break;
    case 'preference':
      h.add(row.prompt as string).add(row.chosen as string).add(row.rejected as string);
      break;
    case 'preference-chat':
      addMessages(h, row.prompt);
      addMessages(h, row.chosen);
      addMessages(h, row.rejected);
      addTools(h, row.tools);
      break;
  }
  return h.digest();
}

function addMessages(h: RowHasher, value: unknown): void {
  const messages = value as Message[];
  h.add(String(messages.length));
  for (const m of messages) {
    h.add(m.role).add(m.content);
    // A marker no role can equal keeps the sequence unambiguous.
    if (m.tool_calls) {
      h.add(`calls:${m.tool_calls.length}`);
      for (const c of m.tool_calls) h.add(c.function.name).add(JSON.stringify(c.function.arguments));
    }
  }
}

function addTools(h: RowHasher, value: unknown): void {
  if (value === undefined) return;
  h.add(`tools:${JSON.stringify(value)}`);
}

/** Chat-template overhead per message (and per tool call), in tokens, for the length estimate. */
const TOKENS_PER_MESSAGE = 4;

/**
 * Estimated tokens of one training sequence of a valid row (its internal form, {@link checkRow}): characters / 4 (a
 * common rule of thumb for English with BPE tokenizers; code and non-Latin scripts run higher), plus 4 tokens per
 * chat message and per tool call for the template; tool calls count their name and JSON arguments, tool definitions
 * their JSON. For preference rows: the prompt plus the longer response.
 */
export function estimateTokens(row: JsonObject, format: DatasetFormat): number {
  switch (format) {
    case 'chat':
      return conversationTokens(row.messages) + toolsTokens(row.tools);
    case 'prompt-completion':
      return textTokens((row.prompt as string).length + (row.completion as string).length);
    case 'alpaca':
      return textTokens((row.instruction as string).length + ((row.input as string | undefined)?.length ?? 0) + (row.output as string).length);
    case 'text':
      return textTokens((row.text as string).length);
    case 'preference':
      return textTokens((row.prompt as string).length + Math.max((row.chosen as string).length, (row.rejected as string).length));
    case 'preference-chat':
      return conversationTokens(row.prompt) + toolsTokens(row.tools) + Math.max(conversationTokens(row.chosen), conversationTokens(row.rejected));
  }
}

function textTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

function conversationTokens(value: unknown): number {
  const messages = value as Message[];
  let chars = 0;
  let overhead = TOKENS_PER_MESSAGE * messages.length;
  for (const m of messages) {
    chars += m.content.length;
    if (m.tool_calls) {
      for (const c of m.tool_calls) chars += c.function.name.length + JSON.stringify(c.function.arguments).length;
      overhead += TOKENS_PER_MESSAGE * m.tool_calls.length;
    }
  }
  return textTokens(chars) + overhead;
}

function toolsTokens(value: unknown): number {
  return value === undefined ? 0 : textTokens(JSON.stringify(value).length);
}

/**
 * Why a JSON value is not a prompt-only row (methods grpo and rloo, ONLINE_RL_METHODS), or undefined when it is one: `{"messages": [...]}` (a
 * chat ending with the user turn the model answers) or `{"prompt": "..."}` / `{"prompt": [...messages]}`. The
 * trainer's rule (training-images/trainer/tuneyard_trainer/grpo.py `read_prompt_rows`, which rloo.py reads its rows with too), with its messages; extra
 * keys are kept (the graders read them as the row).
 */
export function promptOnlyRowProblem(row: unknown): string | undefined {
  if (!isJsonObject(row)) return 'must be a JSON object';
  if (has(row, 'messages')) return promptMessagesProblem(row.messages, 'messages');
  if (typeof row.prompt === 'string') return row.prompt.trim() ? undefined : 'prompt is empty';
  if (has(row, 'prompt')) return promptMessagesProblem(row.prompt, 'prompt');
  return 'has neither "messages" (a chat ending with a user turn) nor "prompt"; GRPO trains on prompts only';
}

function promptMessagesProblem(messages: unknown, where: string): string | undefined {
  if (!Array.isArray(messages) || messages.length === 0) return `${where} must be a non-empty list of messages`;
  for (const [i, message] of messages.entries()) {
    if (!isJsonObject(message) || typeof message.role !== 'string' || typeof message.content !== 'string') {
      return `${where}[${i}] must be an object with a string role and a string content`;
    }
  }
  const last = (messages[messages.length - 1] as JsonObject).role as string;
  if (last !== 'user') return `${where} must end with a user message (the turn the model answers), not ${last}; drop the answer: GRPO samples its own`;
  return undefined;
}

/** The file-level error of a dataset for a training method, or undefined when the format suits it. */
export function methodError(format: DatasetFormat | null, rows: number, method?: Method): DatasetError | undefined {
  if (rows === 0) {
    return { line: 1, code: 'empty-file', message: 'the file has no rows; a dataset needs at least one JSON object per line' };
  }
  if (format === null || method === undefined) return undefined;
  const preference = PREFERENCE_FORMATS.includes(format);
  if (isOnlineRl(method)) {
    // its rows are judged by promptOnlyRowProblem (the report's promptOnly); pairs are never prompt-only
    return preference
      ? { line: 1, code: 'not-prompt-only', message: `method ${method} trains on prompt-only rows ({"messages": [... a user turn]} or {"prompt": ...}); the file holds preference pairs (${format}). Keep each row's prompt only, or use method dpo` }
      : undefined;
  }
  const pairs = method === 'dpo' || method === 'reward'; // DPO and reward models train on preference pairs
  if (pairs && !preference) {
    return {
      line: 1,
      code: 'not-preference',
      message: `method ${method} needs preference pairs ({"prompt","chosen","rejected"}); the file is ${format}. Use method sft, lora or qlora, or convert the data to pairs`,
    };
  }
  if (!pairs && preference) {
    return {
      line: 1,
      code: 'preference-for-sft',
      message: `method ${method} trains on responses, but the file holds preference pairs (${format}); use method dpo`,
    };
  }
  return undefined;
}
