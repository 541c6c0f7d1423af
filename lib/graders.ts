/**
 * Graders: how a run's evaluation scores the answers of the base and the tuned model. One definition,
 * `training-images/trainer/tuneyard_trainer/graders.schema.json`, is read here (the CLI and PlanRun) and by the
 * evaluation job (`tuneyard_trainer/graders.py`, with jsonschema); both run the shared fixtures in
 * `test/fixtures/graders/` and must agree on them.
 *
 * The types and field names are OpenAI's (`string_check`, `text_similarity`, `score_model`, `label_model`, `python`,
 * `multi`), so OpenAI grader JSON carries over unchanged, plus Tuneyard's `json_schema`, `regex` and `label_check`.
 * What a JSON Schema cannot say is checked in code on both sides: templates (`{{ sample.output_text }}`,
 * `{{ sample.output_json.<field> }}`, `{{ item.<field> }}`, nothing else), `multi` formulas, refused metrics, unique
 * names. This file interprets the keywords the schema uses (type, enum, const, required, properties,
 * additionalProperties, propertyNames, min/maxProperties, items, min/maxItems, uniqueItems, min/maxLength, pattern,
 * minimum, maximum, exclusiveMinimum, $ref, allOf, if/then) so that each problem names its JSON path and its fix.
 */

import definition from '../training-images/trainer/tuneyard_trainer/graders.schema.json';
import { closest } from './config';

/** The grader types (graders.schema.json). */
export const GRADER_TYPES = definition.$defs.grader.properties.type.enum as readonly GraderType[];
export type GraderType = 'string_check' | 'text_similarity' | 'score_model' | 'label_model' | 'python' | 'multi' | 'json_schema' | 'regex' | 'label_check';

/** A message of an LLM judge's prompt (score_model, label_model); its content may hold templates. */
export interface GraderMessage {
  readonly type?: 'message';
  readonly role: 'system' | 'developer' | 'user' | 'assistant';
  readonly content: string;
}

export interface StringCheckGrader {
  readonly type: 'string_check';
  readonly name: string;
  readonly input: string;
  readonly reference: string;
  readonly operation: 'eq' | 'ne' | 'like' | 'ilike';
}
export interface TextSimilarityGrader {
  readonly type: 'text_similarity';
  readonly name: string;
  readonly input: string;
  readonly reference: string;
  readonly evaluation_metric: string;
  readonly pass_threshold?: number;
  readonly embedding_model?: string;
}
export interface ScoreModelGrader {
  readonly type: 'score_model';
  readonly name: string;
  readonly model: string;
  readonly input: readonly GraderMessage[];
  readonly range?: readonly [number, number];
  readonly pass_threshold?: number;
  readonly sampling_params?: Record<string, unknown>;
}
export interface LabelModelGrader {
  readonly type: 'label_model';
  readonly name: string;
  readonly model: string;
  readonly input: readonly GraderMessage[];
  readonly labels: readonly string[];
  readonly passing_labels: readonly string[];
}
export interface PythonGrader {
  readonly type: 'python';
  readonly name: string;
  readonly source: string;
  readonly image_tag?: string;
  readonly timeout_seconds?: number;
}
export interface MultiGrader {
  readonly type: 'multi';
  readonly name: string;
  readonly graders: Readonly<Record<string, Exclude<GraderConfig, MultiGrader>>>;
  readonly calculate_output: string;
}
export interface JsonSchemaGrader {
  readonly type: 'json_schema';
  readonly name: string;
  readonly input: string;
  readonly schema: Record<string, unknown>;
}
export interface RegexGrader {
  readonly type: 'regex';
  readonly name: string;
  readonly input: string;
  readonly pattern: string;
  readonly flags?: string;
}
export interface LabelCheckGrader {
  readonly type: 'label_check';
  readonly name: string;
  readonly input: string;
  readonly reference: string;
  readonly labels: readonly string[];
}
export type GraderConfig =
  | StringCheckGrader
  | TextSimilarityGrader
  | ScoreModelGrader
  | LabelModelGrader
  | PythonGrader
  | MultiGrader
  | JsonSchemaGrader
  | RegexGrader
  | LabelCheckGrader;

/** One problem: where (`[0].graders.acc.input`, the same rendering as graders.py) and what to do. */
export interface GraderProblem {
  readonly path: string;
  /** The path as keys (`[0, 'graders', 'acc', 'input']`). */
  readonly at: ReadonlyArray<string | number>;
  readonly message: string;
}

/** Thrown by {@link parseGraders}: the message lists each problem as `<where><path>: <what>; <fix>`. */
export class GradersError extends Error {
  constructor(
    message: string,
    readonly problems: readonly GraderProblem[],
  ) {
    super(message);
    this.name = 'GradersError';
  }
}

/** The most problems an error lists. */
const LISTED_MAX = 20;

/**
 * Validates a list of graders (the parsed JSON of a graders file, or a RunRequest's `graders`). `where` prefixes each
 * path (`graders.json`, `graders`). Throws a {@link GradersError} naming every problem's path and fix.
 */
export function parseGraders(value: unknown, where: string): GraderConfig[] {
  const problems = graderProblems(value);
  if (problems.length === 0) return value as GraderConfig[];
  const lines = problems.slice(0, LISTED_MAX).map((p) => `  - ${where}${p.path}: ${p.message}`);
  if (problems.length > LISTED_MAX) lines.push(`  ... and ${problems.length - LISTED_MAX} more problems`);
  throw new GradersError(`invalid graders (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`, problems);
}

/** Every problem with a list of graders, schema problems first (the rules in code run only on what the schema accepts). */
export function graderProblems(value: unknown): GraderProblem[] {
  const found: Array<{ path: Key[]; message: string }> = [];
  walk(value, definition as Schema, [], found);
  if (found.length === 0) ruleProblems(value as GraderConfig[], found);
  const seen = new Set<string>();
  const out: GraderProblem[] = [];
  for (const { path, message } of found) {
    const problem = { path: renderPath(path), at: path, message };
    const key = `${problem.path}\n${problem.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(problem);
    }
  }
  return out;
}

/**
 * The cosine graders of valid graders, each as its path (`[0]`, `[1].graders.sim`) and name: they embed answers
 * with the run's embeddingModel, which the RunRequest must then name (the evaluation job's embedding_model channel).
 * An absolute embedding_model names a folder of the job itself and needs no channel.
 */
export function cosineGraders(graders: readonly GraderConfig[]): Array<{ path: string; name: string }> {
  const found: Array<{ path: string; name: string }> = [];
  const visit = (grader: GraderConfig, at: Key[]) => {
    if (grader.type === 'multi') {
      for (const [key, sub] of Object.entries(grader.graders)) visit(sub, [...at, 'graders', key]);
    } else if (grader.type === 'text_similarity' && grader.evaluation_metric === 'cosine' && !grader.embedding_model?.startsWith('/')) {
      found.push({ path: renderPath(at), name: grader.name });
    }
  };
  graders.forEach((grader, index) => visit(grader, [index]));
  return found;
}

type Key = string | number;
type Schema = { [keyword: string]: any };

/** `[0].graders.acc.input`: numbers as `[n]`, identifiers as `.name`, other keys as `["key"]`. */
export function renderPath(path: readonly Key[]): string {
  return path.map((k) => (typeof k === 'number' ? `[${k}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)).join('');
}

function echo(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= 120 ? text : `${text.slice(0, 120)}... (${text.length} characters of JSON)`;
}

function resolve(ref: string): Schema {
  if (!ref.startsWith('#/$defs/')) throw new Error(`graders.schema.json: unsupported $ref ${ref}`);
  return (definition.$defs as Record<string, Schema>)[ref.slice('#/$defs/'.length)];
}

function described(schema: Schema | undefined): string {
  if (!schema) return '';
  if (typeof schema.description === 'string') return schema.description;
  return typeof schema.$ref === 'string' ? (resolve(schema.$ref).description ?? '') : '';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeMatches(value: unknown, type: string): boolean {
  switch (type) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    default:
      throw new Error(`graders.schema.json: unsupported type ${type}`);
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function valid(value: unknown, schema: Schema): boolean {
  const found: Array<{ path: Key[]; message: string }> = [];
  walk(value, schema, [], found);
  return found.length === 0;
}

/** JSON Schema's code-point length (what jsonschema counts), not UTF-16 units. */
function length(text: string): number {
  return [...text].length;
}

function walk(value: unknown, schema: Schema, path: Key[], out: Array<{ path: Key[]; message: string }>): void {
  const fail = (message: string, at: Key[] = path) => out.push({ path: at, message });
  const what = (fallback: string) => described(schema) || fallback;
  if (typeof schema.$ref === 'string') walk(value, resolve(schema.$ref), path, out);
  if (schema.type !== undefined && !typeMatches(value, schema.type)) {
    fail(`${what(`must be of type ${schema.type}`)} (got ${echo(value)})`);
    return; // the other keywords of a typed schema apply to that type only
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((v: unknown) => deepEqual(v, value))) {
    const near = typeof value === 'string' ? closest(value, schema.enum.map(String)) : undefined;
    fail(`${what(`must be one of ${schema.enum.join(', ')}`)} (got ${echo(value)})${near ? `; did you mean "${near}"?` : ''}`);
  }
  if ('const' in schema && !deepEqual(schema.const, value)) fail(`${what(`must be ${echo(schema.const)}`)} (got ${echo(value)})`);
  if (isObject(value)) {
    const properties: Record<string, Schema> = schema.properties ?? {};
    for (const key of schema.required ?? []) {
      if (!(key in value)) fail(`missing; ${described(properties[key]) || 'add it'}`, [...path, key]);
    }
    for (const [key, sub] of Object.entries(properties)) if (key in value) walk(value[key], sub, [...path, key], out);
    const extra = Object.keys(value).filter((key) => !(key in properties));
    if (schema.additionalProperties === false) {
      const known = Object.keys(properties).sort();
      for (const key of extra) {
        const near = closest(key, known);
        fail(`unknown field; ${near ? `did you mean "${near}"?` : `the fields are ${known.join(', ')}`}`, [...path, key]);
      }
    } else if (isObject(schema.additionalProperties)) {
      for (const key of extra) walk(value[key], schema.additionalProperties, [...path, key], out);
    }
    if (schema.propertyNames) {
      for (const key of Object.keys(value)) {
        if (!valid(key, schema.propertyNames)) fail(`${described(schema.propertyNames)} (got ${echo(key)})`, [...path, key]);
      }
    }
    if (schema.minProperties !== undefined && Object.keys(value).length < schema.minProperties) fail(`${what(`must have at least ${schema.minProperties} fields`)} (got ${echo(value)})`);
  }
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => walk(item, schema.items, [...path, i], out));
    if (schema.minItems !== undefined && value.length < schema.minItems) fail(`${what(`must have at least ${schema.minItems} items`)} (got ${echo(value)})`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) fail(`${what(`must have at most ${schema.maxItems} items`)} (got ${echo(value)})`);
    if (schema.uniqueItems && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) fail(`${what('must not repeat an item')} (got ${echo(value)})`);
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && length(value) < schema.minLength) fail(`${what(`must be at least ${schema.minLength} characters`)} (got ${echo(value)})`);
    if (schema.maxLength !== undefined && length(value) > schema.maxLength) fail(`${what(`must be at most ${schema.maxLength} characters`)} (got ${echo(value)})`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) fail(`${what(`must match ${schema.pattern}`)} (got ${echo(value)})`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) fail(`${what(`must be at least ${schema.minimum}`)} (got ${echo(value)})`);
    if (schema.maximum !== undefined && value > schema.maximum) fail(`${what(`must be at most ${schema.maximum}`)} (got ${echo(value)})`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) fail(`${what(`must be above ${schema.exclusiveMinimum}`)} (got ${echo(value)})`);
  }
  for (const sub of schema.allOf ?? []) walk(value, sub, path, out);
  if (schema.if && schema.then && valid(value, schema.if)) walk(value, schema.then, path, out);
}

// ---------------------------------------------------------------------------------------------------------------------
// The rules a JSON Schema cannot say (graders.py `_rule_problems` checks the same)
// ---------------------------------------------------------------------------------------------------------------------

const EXTENSION = definition['x-tuneyard'];
const REFUSED_METRICS: Record<string, string> = EXTENSION.refusedMetrics;
const SAMPLE_FIELDS: readonly string[] = EXTENSION.sampleFields;
const FORMULA_FUNCTIONS: readonly string[] = EXTENSION.formulaFunctions;
const FORMULA_NUMBER = new RegExp(EXTENSION.formulaNumber);
const TEMPLATE_FORMS = '{{ sample.output_text }}, {{ sample.output_json.<field> }} or {{ item.<field> }}';

function ruleProblems(graders: GraderConfig[], out: Array<{ path: Key[]; message: string }>): void {
  const names = new Map<string, number>();
  graders.forEach((grader, index) => {
    const first = names.get(grader.name);
    if (first !== undefined) {
      out.push({ path: [index, 'name'], message: `"${grader.name}" is also the name of [${first}]; give each grader its own name (results and thresholds are keyed by it)` });
    } else names.set(grader.name, index);
    graderRules(grader, [index], out);
  });
}

function graderRules(grader: GraderConfig, at: Key[], out: Array<{ path: Key[]; message: string }>): void {
  const fail = (path: Key[], message: string) => out.push({ path: [...at, ...path], message });
  const fields = grader as unknown as Record<string, unknown>;
  for (const key of ['input', 'reference']) {
    if (typeof fields[key] === 'string') for (const problem of templateProblems(fields[key] as string)) fail([key], problem);
  }
  switch (grader.type) {
    case 'score_model':
    case 'label_model':
      grader.input.forEach((message, i) => templateProblems(message.content).forEach((problem) => fail(['input', i, 'content'], problem)));
      if (grader.type === 'label_model') {
        grader.passing_labels.forEach((label, i) => {
          if (!grader.labels.includes(label)) fail(['passing_labels', i], `"${label}" is not one of labels (${grader.labels.join(', ')}); passing_labels must be a subset of labels`);
        });
      } else if (grader.range && !(grader.range[0] < grader.range[1])) {
        fail(['range'], `must be [low, high] with low below high (got ${echo(grader.range)})`);
      }
      break;
    case 'text_similarity': {
      const metric = grader.evaluation_metric;
      if (metric in REFUSED_METRICS) fail(['evaluation_metric'], `"${metric}" is not available: ${REFUSED_METRICS[metric]}`);
      // cosine's encoder is the run's embeddingModel (the RunRequest checks that it is set: cosineGraders)
      if (metric !== 'cosine' && grader.embedding_model !== undefined) fail(['embedding_model'], `is used by the cosine metric only; remove it (evaluation_metric is "${metric}")`);
      break;
    }
    case 'regex': {
      const problem = regexProblem(grader.pattern, grader.flags ?? '');
      if (problem) fail(['pattern'], problem);
      break;
    }
    case 'python':
      // The evaluation job parses the source (ast); here, without a Python parser, only that it defines grade().
      if (!/^(async\s+)?def\s+grade\s*\(/m.test(grader.source)) fail(['source'], 'defines no top-level function grade(sample, item) -> float; add one');
      break;
    case 'multi':
      for (const [name, sub] of Object.entries(grader.graders)) graderRules(sub, [...at, 'graders', name], out);
      try {
        parseFormula(grader.calculate_output, Object.keys(grader.graders));
      } catch (e) {
        fail(['calculate_output'], (e as Error).message);
      }
      break;
    default:
      break;
  }
}

/**
 * The pattern's problem as JavaScript can tell it, after rewriting what Python's `re` writes differently: named groups
 * `(?P<name>...)` and `(?P=name)`, global flags at the start (`(?i)`), scoped flags (`(?i:...)`), comments (`(?#...)`).
 * JavaScript-only syntax (`(?<name>...)`, `\k<name>`, `\p{...}`) is refused, as Python would. The evaluation job
 * compiles the pattern with Python's `re`, the authority: what JavaScript cannot judge (verbose patterns, back references
 * to groups not yet closed, look-behinds of varying width) is refused there, before any answer is generated.
 */
function regexProblem(pattern: string, flags: string): string | undefined {
  const fix = 'fix the pattern (Python re syntax)';
  const global = /^\(\?([aiLmsux]+)\)/.exec(pattern);
  const letters = flags + (global?.[1] ?? '');
  if (letters.includes('x')) return undefined;
  const escaped = (what: string) => new RegExp(`(?<!\\\\)(?:\\\\\\\\)*${what}`).test(pattern);
  if (/\(\?<(?![=!])/.test(pattern)) return `uses (?<name>...), which Python's re writes (?P<name>...); ${fix}`;
  if (escaped('\\\\k<')) return `uses \\k<name>, which Python's re writes (?P=name); ${fix}`;
  if (escaped('\\\\[pP]\\{')) return `uses \\p{...}, a Unicode property class Python's re does not have; ${fix}`;
  const reference = openReference(pattern);
  if (reference) return `refers to group ${reference}, which is not closed before it (Python's re refuses it); ${fix}`;
  const js = pattern
    .slice(global?.[0].length ?? 0)
    .replace(/\(\?#[^)]*\)/g, '')
    .replace(/\(\?[aiLmsux-]+:/g, '(?:')
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?P=(\w+)\)/g, '\\k<$1>');
  try {
    new RegExp(js, [...new Set(letters.replace(/[^ims]/g, ''))].join(''));
    return undefined;
  } catch (e) {
    return `is not a valid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}; ${fix}`;
  }
}

/** The first back reference `\\N` to a group not closed before it (Python refuses it; JavaScript reads an octal escape). */
function openReference(pattern: string): number | undefined {
  const open: boolean[] = []; // per open group: does it capture?
  let closed = 0;
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const digits = /^[1-9]\d?/.exec(pattern.slice(i + 1));
      if (!inClass && digits && Number(digits[0]) > closed) return Number(digits[0]);
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
      if (pattern[i + 1] === ']') i++; // a ] first in a class is a literal
    } else if (c === '(') {
      open.push(pattern[i + 1] !== '?' || pattern.startsWith('(?P<', i));
    } else if (c === ')' && open.pop()) {
      closed++;
    }
  }
  return undefined;
}

/** A parsed `{{ ... }}` reference: its namespace and steps, or the problem with it. */
function parseReference(text: string): { namespace: 'sample' | 'item'; steps: Key[] } | string {
  const trimmed = text.trim();
  const match = /^(sample|item)((?:\.[A-Za-z0-9_-]+|\[\d+\])+)$/.exec(trimmed);
  if (!match) return `"{{${text}}}" is not a template this resolver knows; use ${TEMPLATE_FORMS}`;
  const steps: Key[] = [...match[2].matchAll(/\.([A-Za-z0-9_-]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]));
  const namespace = match[1] as 'sample' | 'item';
  if (namespace === 'sample') {
    const first = steps[0];
    if (typeof first !== 'string' || !SAMPLE_FIELDS.includes(first)) {
      const near = closest(String(first), SAMPLE_FIELDS);
      const hint = near
        ? `did you mean "sample.${near}"?`
        : `the sample has ${SAMPLE_FIELDS.map((f) => `sample.${f}`).join(', ')} (Tuneyard's evaluation generates text, not tool calls or choices)`;
      return `"${trimmed}" is not a field of the sample; ${hint}`;
    }
    if (first === 'output_text' && steps.length > 1) {
      return `"${trimmed}": sample.output_text is a string and has no fields; use sample.output_json.<field> for a field of a JSON answer`;
    }
  }
  return { namespace, steps };
}

/** The problems with a template string (unknown references, an unclosed `{{`). */
export function templateProblems(template: string): string[] {
  const problems: string[] = [];
  const tags = /\{\{([\s\S]*?)\}\}/g;
  if (template.replace(tags, '').includes('{{')) problems.push('has a "{{" without its "}}"; close the template or remove the braces');
  for (const m of template.matchAll(tags)) {
    const parsed = parseReference(m[1]);
    if (typeof parsed === 'string') problems.push(parsed);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------------
// multi: the formula language graders.py evaluates (Python's expression syntax, whitelisted)
// ---------------------------------------------------------------------------------------------------------------------

const FORMULA_HINT = `use numbers, grader names, + - * / ^, parentheses and ${FORMULA_FUNCTIONS.join(', ')}`;

/**
 * Checks a `calculate_output` formula: numbers, the graders' names, `+ - * /`, `^` or `**` (power), unary minus,
 * parentheses and the functions of `x-tuneyard.formulaFunctions`. Throws naming what is not allowed.
 */
export function parseFormula(text: string, names: readonly string[]): void {
  const tokens = [...text.matchAll(/\s*(\*\*|(?:\d|\.\d)(?:[\w.]|(?<=[eE])[+-])*|[A-Za-z_][A-Za-z0-9_]*|[-+*/^(),]|\S)/g)].map((m) => m[1]);
  let at = 0;
  const peek = () => tokens[at];
  const syntax = (): never => {
    throw new Error(`is not a formula (unexpected ${peek() === undefined ? 'end' : `"${peek()}"`}): ${FORMULA_HINT}`);
  };
  const expect = (token: string) => (peek() === token ? at++ : syntax());
  const sum = (): void => {
    product();
    while (peek() === '+' || peek() === '-') at++, product();
  };
  const product = (): void => {
    unary();
    while (peek() === '*' || peek() === '/') at++, unary();
  };
  const unary = (): void => {
    if (peek() === '+' || peek() === '-') {
      at++;
      unary();
    } else power();
  };
  const power = (): void => {
    atom();
    if (peek() === '**' || peek() === '^') at++, unary();
  };
  const atom = (): void => {
    const token = peek();
    if (token === undefined) syntax();
    if (token === '(') {
      at++;
      sum();
      expect(')');
    } else if (/^[\d.]/.test(token)) {
      if (!FORMULA_NUMBER.test(token)) throw new Error(`has "${token}", which is not a number formulas take: write decimal numbers such as 2, 0.5 or 1e-3`);
      at++;
    } else if (/^[A-Za-z_]/.test(token)) {
      at++;
      if (peek() === '(') {
        if (!FORMULA_FUNCTIONS.includes(token)) {
          const near = closest(token, FORMULA_FUNCTIONS);
          throw new Error(`calls "${token}", which is not a formula function; ${near ? `did you mean "${near}"? ` : ''}the functions are ${FORMULA_FUNCTIONS.join(', ')}`);
        }
        at++;
        if (peek() === ')') throw new Error(`calls ${token}() with no arguments; pass at least one`);
        sum();
        while (peek() === ',') {
          at++;
          if (peek() === ')') break; // a trailing comma, as Python allows
          sum();
        }
        expect(')');
      } else if (!names.includes(token)) {
        const near = closest(token, names);
        throw new Error(`uses "${token}", which is not one of its graders; ${near ? `did you mean "${near}"? ` : ''}the graders are ${names.join(', ')}`);
      }
    } else syntax();
  };
  sum();
  if (at < tokens.length) syntax();
}

/** The graders as compact JSON, the form the evaluation job reads (its `graders` hyperparameter). */
export function compactGraders(graders: readonly GraderConfig[]): string {
  return JSON.stringify(graders);
}
