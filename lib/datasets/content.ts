import { RowHasher } from './row-hashes';

/**
 * The fields of a row that hold what the model reads and learns, in a fixed order: those of every
 * format (chat, prompt/completion, Alpaca, text, preference pairs) and of the dialects that map onto
 * them (ShareGPT `conversations`, OpenAI preference `input`/`preferred_output`/`non_preferred_output`).
 * Ids, metadata, `tools` and key order are not content.
 */
export const CONTENT_FIELDS = [
  'messages',
  'conversations',
  'instruction',
  'input',
  'prompt',
  'completion',
  'output',
  'text',
  'chosen',
  'rejected',
  'preferred_output',
  'non_preferred_output',
] as const;

/**
 * The hash of a row's normalised content, for the train/eval overlap check: every string under the
 * row's {@link CONTENT_FIELDS} (message roles, contents, tool calls' arguments...), in document order,
 * each normalised ({@link RowHasher.addNormalized}: NFKC, lower-cased, white space collapsed and
 * trimmed). A copy with a trailing space, other capitals or full-width characters has the same hash;
 * numbers (e.g. message weights) do not count.
 */
export function contentHash(row: Record<string, unknown>): [number, number] {
  const h = new RowHasher();
  for (const field of CONTENT_FIELDS) {
    const value = row[field];
    if (value === undefined) continue;
    h.add(field);
    addStrings(h, value);
  }
  return h.digest();
}

function addStrings(h: RowHasher, value: unknown): void {
  if (typeof value === 'string') {
    h.addNormalized(value);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) addStrings(h, value[i]);
  } else if (typeof value === 'object' && value !== null) {
    const object = value as Record<string, unknown>;
    if (object.role !== undefined || object.content !== undefined) {
      // A message: its role, content and tool calls, whatever their key order (ids and weights are not content).
      if (object.role !== undefined) addStrings(h, object.role);
      if (object.content !== undefined) addStrings(h, object.content);
      if (object.tool_calls !== undefined) addStrings(h, object.tool_calls);
    } else {
      for (const key in object) if (key !== 'id') addStrings(h, object[key]);
    }
  }
}
