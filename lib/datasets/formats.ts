/**
 * Dataset formats and the per-row rules: the one TypeScript definition, used by `tuneyard validate`,
 * the ValidateDataset Lambda and their tests. The Python trainer (`tuneyard_trainer/data.py`)
 * implements the same rules; both are tested against the shared corpus in
 * `test/fixtures/datasets/` (rules: its README.md).
 */

import { RowHasher } from './row-hashes';
import type { Method } from '../methods';

/** The formats of a JSONL dataset, decided per row from its keys. */
export const DATASET_FORMATS = ['chat', 'prompt-completion', 'alpaca', 'text', 'preference', 'preference-chat'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

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
  | 'not-preference'
  | 'preference-for-sft'
  | 'identical-pair'
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

const ROLES = ['system', 'user', 'assistant'];

type JsonObject = Record<string, unknown>;

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

/** The format a JSON object belongs to, decided by its keys (extra keys are ignored); null when none. */
export function detectFormat(row: JsonObject): DatasetFormat | null {
  if (has(row, 'messages')) return 'chat';
  if (has(row, 'chosen') || has(row, 'rejected')) return Array.isArray(row.prompt) ? 'preference-chat' : 'preference';
  if (has(row, 'instruction') || has(row, 'output')) return 'alpaca';
  if (has(row, 'prompt') || has(row, 'completion')) return 'prompt-completion';
  if (has(row, 'text')) return 'text';
  return null;
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

/** Checks every message of a conversation; returns their roles. */
function checkMessages(value: unknown, where: string): string[] {
  if (!Array.isArray(value)) {
    throw new RowInvalid('wrong-type', `"${where}" must be an array of {"role","content"} messages, got ${jsonType(value)}`);
  }
  const roles: string[] = [];
  for (let i = 0; i < value.length; i++) {
    const message = value[i];
    const at = `${where}[${i}]`;
    if (!isJsonObject(message)) throw new RowInvalid('wrong-type', `"${at}" must be an object with "role" and "content", got ${jsonType(message)}`);
    for (const key of ['role', 'content']) {
      if (!has(message, key)) throw new RowInvalid('missing-field', `missing field "${at}.${key}"; every message needs "role" and "content"`);
    }
    for (const key of ['role', 'content']) {
      if (typeof message[key] !== 'string') throw new RowInvalid('wrong-type', `"${at}.${key}" must be a string, got ${jsonType(message[key])}`);
    }
    const role = message.role as string;
    if (!ROLES.includes(role)) {
      throw new RowInvalid('invalid-role', `"${at}.role" is ${JSON.stringify(role)}; use one of ${ROLES.join(', ')} (lower case)`);
    }
    if (isBlank(message.content as string)) throw new RowInvalid('empty-content', `"${at}.content" is empty; give it some text or drop the message`);
    roles.push(role);
  }
  return roles;
}

/** An optional leading system message, then user/assistant alternating, starting with user. */
function checkTurnOrder(roles: string[], where: string): void {
  const offset = roles[0] === 'system' ? 1 : 0;
  for (let i = offset; i < roles.length; i++) {
    const expected = (i - offset) % 2 === 0 ? 'user' : 'assistant';
    if (roles[i] !== expected) {
      throw new RowInvalid(
        'role-order',
        `"${where}": expected a ${expected} message at position ${i}, got ${roles[i]} ` +
          '(an optional system message first, then user and assistant alternating, starting with user)',
      );
    }
  }
}

function checkChat(row: JsonObject): void {
  const roles = checkMessages(row.messages, 'messages');
  checkTurnOrder(roles, 'messages');
  if (roles.length === 0 || roles[roles.length - 1] !== 'assistant') {
    throw new RowInvalid('no-assistant', '"messages" must end with an assistant message (the response the model learns); add one or drop the row');
  }
}

function pairKey(value: unknown): string {
  if (typeof value === 'string') return value;
  return JSON.stringify((value as JsonObject[]).map((m) => [m.role, m.content]));
}

function checkPreference(row: JsonObject, conversational: boolean): void {
  if (!has(row, 'prompt')) throw new RowInvalid('missing-field', 'missing field "prompt"; preference rows need prompt, chosen and rejected');
  if (conversational) {
    const roles = checkMessages(row.prompt, 'prompt');
    checkTurnOrder(roles, 'prompt');
    if (roles.length === 0 || roles[roles.length - 1] !== 'user') {
      throw new RowInvalid('role-order', '"prompt" must end with a user message (the turn that chosen and rejected answer)');
    }
  } else {
    checkString(row, 'prompt');
  }
  for (const key of ['chosen', 'rejected']) {
    if (!has(row, key)) throw new RowInvalid('missing-field', `missing field "${key}"; preference rows need prompt, chosen and rejected`);
    if (!conversational) {
      checkString(row, key);
      continue;
    }
    const roles = checkMessages(row[key], key);
    if (roles.length === 0) throw new RowInvalid('no-assistant', `"${key}" must hold at least one assistant message`);
    if (roles.some((role) => role !== 'assistant')) throw new RowInvalid('role-order', `"${key}" must hold assistant messages only`);
  }
  if (pairKey(row.chosen) === pairKey(row.rejected)) {
    throw new RowInvalid('identical-pair', '"chosen" and "rejected" are identical, so the pair teaches nothing; fix or drop the row');
  }
}

/** Checks a row of a known format; throws {@link RowInvalid} with the row's first problem. */
export function checkRow(row: JsonObject, format: DatasetFormat): void {
  switch (format) {
    case 'chat':
      return checkChat(row);
    case 'prompt-completion':
      checkString(row, 'prompt');
      return checkString(row, 'completion');
    case 'alpaca':
      checkString(row, 'instruction');
      checkString(row, 'input', false, true);
      return checkString(row, 'output');
    case 'text':
      return checkString(row, 'text');
    case 'preference':
      return checkPreference(row, false);
    case 'preference-chat':
      return checkPreference(row, true);
  }
}

/**
 * The hash of a valid row's canonical form: the format and the fields the trainer uses, in a fixed
 * order (ids, metadata, key order and JSON spacing do not make two rows differ). Used for the
 * duplicate and contamination checks.
 */
export function rowHash(row: JsonObject, format: DatasetFormat): [number, number] {
  const h = new RowHasher().add(format);
  switch (format) {
    case 'chat':
      addMessages(h, row.messages);
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
      break;
  }
  return h.digest();
}

function addMessages(h: RowHasher, value: unknown): void {
  const messages = value as JsonObject[];
  h.add(String(messages.length));
  for (const m of messages) h.add(m.role as string).add(m.content as string);
}

/** Chat-template overhead per message, in tokens, for the length estimate. */
const TOKENS_PER_MESSAGE = 4;

/**
 * Estimated tokens of one training sequence of a valid row: characters / 4 (a common rule of
 * thumb for English with BPE tokenizers; code and non-Latin scripts run higher), plus 4 tokens per
 * chat message for the template. For preference rows: the prompt plus the longer response.
 */
export function estimateTokens(row: JsonObject, format: DatasetFormat): number {
  switch (format) {
    case 'chat':
      return conversationTokens(row.messages);
    case 'prompt-completion':
      return textTokens((row.prompt as string).length + (row.completion as string).length);
    case 'alpaca':
      return textTokens((row.instruction as string).length + ((row.input as string | undefined)?.length ?? 0) + (row.output as string).length);
    case 'text':
      return textTokens((row.text as string).length);
    case 'preference':
      return textTokens((row.prompt as string).length + Math.max((row.chosen as string).length, (row.rejected as string).length));
    case 'preference-chat':
      return conversationTokens(row.prompt) + Math.max(conversationTokens(row.chosen), conversationTokens(row.rejected));
  }
}

function textTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

function conversationTokens(value: unknown): number {
  const messages = value as JsonObject[];
  let chars = 0;
  for (const m of messages) chars += (m.content as string).length;
  return textTokens(chars) + TOKENS_PER_MESSAGE * messages.length;
}

/** The file-level error of a dataset for a training method, or undefined when the format suits it. */
export function methodError(format: DatasetFormat | null, rows: number, method?: Method): DatasetError | undefined {
  if (rows === 0) {
    return { line: 1, code: 'empty-file', message: 'the file has no rows; a dataset needs at least one JSON object per line' };
  }
  if (format === null || method === undefined) return undefined;
  const preference = PREFERENCE_FORMATS.includes(format);
  if (method === 'dpo' && !preference) {
    return {
      line: 1,
      code: 'not-preference',
      message: `method dpo needs preference pairs ({"prompt","chosen","rejected"}); the file is ${format}. Use method sft, lora or qlora, or convert the data to pairs`,
    };
  }
  if (method !== 'dpo' && preference) {
    return {
      line: 1,
      code: 'preference-for-sft',
      message: `method ${method} trains on responses, but the file holds preference pairs (${format}); use method dpo`,
    };
  }
  return undefined;
}
