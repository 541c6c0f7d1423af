/**
 * Whether a string is a Python regular expression (the `re` module of Python 3.11 and 3.12), checked without Python: a port of
 * the checks of CPython's `re._parser` (and the look-behind width check of `re._compiler`), so that a typo in a
 * recipe's `grpoFormatRegex` is refused when the run is planned, not when its training job compiles it.
 *
 * JavaScript's RegExp is no judge here: it reads Python-only syntax (`(?P<name>...)`, `(?P=name)`, `\A`, `\Z`, inline
 * and scoped flags, `(?#...)`, atomic groups, possessive quantifiers, verbose mode) as errors or as something else,
 * accepts what Python refuses (`\q`, `{2,1}` as literals in non-Unicode mode) and names no position. The port reports
 * Python's own message and position (`str(re.error)`: "missing ), unterminated subpattern at position 3").
 *
 * It refuses only what Python refuses: where the port cannot decide without Python's Unicode database (a `\N{...}`
 * character name and the code point it names, the non-ASCII characters of a group name), it accepts; what Python 3.12
 * refuses but 3.11 only warns of (a conditional group number with a sign or non-ASCII digits), it accepts too.
 */

const MAXREPEAT = 4294967295;
const MAXGROUPS = 1073741823;
const MAXWIDTH = 2 ** 64;
/**
 * The deepest `nested` (as `_parse_sub` and `_parse` pass it: one more per call, and they call each other, so one
 * Python frame each) at which CPython 3.11-3.13 still parses a pattern compiled from a module's top level, the
 * shallowest stack there is; one deeper, re.compile raises RecursionError (the default recursion limit, 1,000
 * frames), whatever else the pattern holds. The trainer compiles from deeper, so it fails there too.
 */
const MAX_NESTED = 992;

const SPECIAL_CHARS = '.\\[{()*+?^$|';
const REPEAT_CHARS = '*+?{';
const DIGITS = '0123456789';
const OCTDIGITS = '01234567';
const HEXDIGITS = '0123456789abcdefABCDEF';
const WHITESPACE = ' \t\n\r\v\f';
const ASCII_LETTER = /^[A-Za-z]$/;
const ESCAPES: Record<string, number> = { '\\a': 7, '\\b': 8, '\\f': 12, '\\n': 10, '\\r': 13, '\\t': 9, '\\v': 11, '\\\\': 92 };
/** Escapes that are categories or assertions outside a set; in a set only the categories (IN) are. */
const CATEGORIES_IN = new Set(['\\d', '\\D', '\\s', '\\S', '\\w', '\\W']);
const CATEGORIES_AT = new Set(['\\A', '\\b', '\\B', '\\Z']);

const FLAG = { i: 2, L: 4, m: 8, s: 16, x: 64, a: 256, t: 1, u: 32 } as Record<string, number>;
const VERBOSE = 64;
const TYPE_FLAGS = 256 | 4 | 32;
const GLOBAL_FLAGS = 1; // TEMPLATE (DEBUG is not an inline flag)

class PythonRegexError extends Error {
  constructor(
    readonly msg: string,
    readonly pos?: number,
  ) {
    super(msg);
  }
}

/** The kinds of item `_parse` appends that its later checks look at. */
type Op = 'literal' | 'in' | 'at' | 'any' | 'repeat' | 'subpattern' | 'atomic' | 'groupref' | 'groupref_exists' | 'assert';

interface Item {
  readonly op: Op;
  /** (min, max) width of what it matches, as SubPattern.getwidth() computes it. */
  readonly width: readonly [number, number];
  /** For a literal: its code point, when known (a range compares them). */
  readonly value?: number;
}

interface State {
  flags: number;
  readonly groupdict: Map<string, number>;
  /** Widths of the groups, undefined while open (index 0: the whole pattern, never referred to). */
  readonly groupwidths: Array<readonly [number, number] | undefined>;
  lookbehindgroups?: number;
  readonly grouprefpos: Map<number, number>;
  /** The first error re._compiler raises once parsing succeeded. */
  compileError?: string;
}

/** Python's `repr()` of a str, as its messages quote group names (`'name'`). */
function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

/**
 * `str.isidentifier()`: exact for ASCII names; a name with other characters is refused only for its ASCII ones (a
 * first digit, a character other than letters, digits and _), since Python's XID tables decide the rest.
 */
function isIdentifier(name: string): boolean {
  if (/^[\x00-\x7f]*$/.test(name)) return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
  return !/^\p{Nd}/u.test(name) && !/[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]/.test(name);
}

class Tokenizer {
  private readonly chars: string[];
  /** The code point after `next`. */
  private index = 0;
  /** The next token: one character, or `\\` and the character it escapes. */
  next: string | undefined;
  /** The code points of `next` (2 for an escape). */
  private nextLength = 0;

  constructor(pattern: string) {
    this.chars = [...pattern];
    this.advance();
  }

  private advance(): void {
    let index = this.index;
    let char = this.chars[index];
    if (char === undefined) {
      this.next = undefined;
      this.nextLength = 0;
      return;
    }
    if (char === '\\') {
      index += 1;
      const escaped = this.chars[index];
      if (escaped === undefined) throw new PythonRegexError('bad escape (end of pattern)', this.chars.length - 1);
      char += escaped;
    }
    this.nextLength = index + 1 - this.index;
    this.index = index + 1;
    this.next = char;
  }

  match(char: string): boolean {
    if (char === this.next) {
      this.advance();
      return true;
    }
    return false;
  }

  get(): string | undefined {
    const current = this.next;
    this.advance();
    return current;
  }

  getwhile(n: number, charset: string): string {
    let result = '';
    for (let i = 0; i < n; i++) {
      const c = this.next;
      if (!isIn(c, charset)) break;
      result += c;
      this.advance();
    }
    return result;
  }

  getuntil(terminator: string, name: string): string {
    let result = '';
    for (;;) {
      const c = this.next;
      this.advance();
      if (c === undefined) {
        if (!result) throw this.error(`missing ${name}`);
        throw this.error(`missing ${terminator}, unterminated name`, len(result));
      }
      if (c === terminator) {
        if (!result) throw this.error(`missing ${name}`, 1);
        break;
      }
      result += c;
    }
    return result;
  }

  tell(): number {
    return this.index - this.nextLength;
  }

  seek(index: number): void {
    this.index = index;
    this.advance();
  }

  error(msg: string, offset = 0): PythonRegexError {
    return new PythonRegexError(msg, this.tell() - offset);
  }

  checkgroupname(name: string, offset: number): void {
    if (!isIdentifier(name)) throw this.error(`bad character in group name ${pyRepr(name)}`, len(name) + offset);
  }
}

const len = (s: string) => [...s].length;
const isIn = (c: string | undefined, set: string) => c !== undefined && c.length === 1 && set.includes(c);

function checkgroup(state: State, gid: number): boolean {
  return gid < state.groupwidths.length && state.groupwidths[gid] !== undefined;
}

function checklookbehindgroup(state: State, gid: number, source: Tokenizer): void {
  if (state.lookbehindgroups !== undefined) {
    if (!checkgroup(state, gid)) throw source.error('cannot refer to an open group');
    if (gid >= state.lookbehindgroups) throw source.error('cannot refer to group defined in the same lookbehind subpattern');
  }
}

/** `_class_escape` (state undefined: in a set) and `_escape`: the item an escape stands for. */
function escape(source: Tokenizer, esc: string, state: State | undefined): Item {
  const inClass = state === undefined;
  if (!inClass && CATEGORIES_AT.has(esc)) return { op: 'at', width: [0, 0] };
  if (Object.hasOwn(ESCAPES, esc)) return literal(ESCAPES[esc]);
  if (CATEGORIES_IN.has(esc)) return { op: 'in', width: [1, 1] };
  const c = esc.slice(1, 2);
  if (c === 'x' || c === 'u' || c === 'U') {
    const digits = c === 'x' ? 2 : c === 'u' ? 4 : 8;
    const full = esc + source.getwhile(digits, HEXDIGITS);
    if (full.length !== digits + 2) throw source.error(`incomplete escape ${full}`, full.length);
    const value = parseInt(full.slice(2), 16);
    if (value > 0x10ffff) throw source.error(`bad escape ${full}`, full.length);
    return literal(value);
  }
  if (c === 'N') {
    if (!source.match('{')) throw source.error('missing {');
    source.getuntil('}', 'character name');
    return literal(undefined); // whether the name exists is for Python's Unicode database to say
  }
  if (inClass) {
    if (isIn(c, OCTDIGITS)) {
      const full = esc + source.getwhile(2, OCTDIGITS);
      const value = parseInt(full.slice(1), 8);
      if (value > 0o377) throw source.error(`octal escape value ${full} outside of range 0-0o377`, full.length);
      return literal(value);
    }
    if (isIn(c, DIGITS)) throw source.error(`bad escape ${esc}`, esc.length);
  } else if (c === '0') {
    return literal(parseInt(`0${source.getwhile(2, OCTDIGITS)}`, 8));
  } else if (isIn(c, DIGITS)) {
    let full = esc;
    if (isIn(source.next, DIGITS)) {
      full += source.get();
      if (isIn(full[1], OCTDIGITS) && isIn(full[2], OCTDIGITS) && isIn(source.next, OCTDIGITS)) {
        full += source.get();
        const value = parseInt(full.slice(1), 8);
        if (value > 0o377) throw source.error(`octal escape value ${full} outside of range 0-0o377`, full.length);
        return literal(value);
      }
    }
    const group = parseInt(full.slice(1), 10);
    if (group < state!.groupwidths.length) {
      if (!checkgroup(state!, group)) throw source.error('cannot refer to an open group', full.length);
      checklookbehindgroup(state!, group, source);
      return { op: 'groupref', width: state!.groupwidths[group]! };
    }
    throw source.error(`invalid group reference ${group}`, full.length - 1);
  }
  if (ASCII_LETTER.test(c)) throw source.error(`bad escape ${esc}`, len(esc));
  return literal(esc.codePointAt(1));
}

function literal(value: number | undefined): Item {
  return { op: 'literal', width: [1, 1], value };
}

function sequenceWidth(items: readonly Item[]): [number, number] {
  let lo = 0;
  let hi = 0;
  for (const item of items) {
    lo += item.width[0];
    hi += item.width[1];
  }
  return [Math.min(lo, MAXWIDTH), Math.min(hi, MAXWIDTH)];
}

/** `_parse_sub`: alternatives separated by `|`; its width. */
function parseSub(source: Tokenizer, state: State, verbose: boolean, nested: number): [number, number] {
  const widths: Array<[number, number]> = [];
  for (;;) {
    widths.push(sequenceWidth(parse(source, state, verbose, nested + 1, !nested && widths.length === 0)));
    if (!source.match('|')) break;
    if (!nested) verbose = (state.flags & VERBOSE) !== 0;
  }
  if (widths.length === 1) return widths[0];
  return [Math.min(...widths.map((w) => w[0])), Math.max(...widths.map((w) => w[1]))];
}

/** `_parse`: one alternative; its items. */
function parse(source: Tokenizer, state: State, verbose: boolean, nested: number, first = false): Item[] {
  if (nested > MAX_NESTED) throw source.error("nested too deeply: Python's re module fails with RecursionError (maximum recursion depth exceeded)");
  const subpattern: Item[] = [];
  for (;;) {
    const self = source.next;
    if (self === undefined || self === '|' || self === ')') break;
    source.get();
    if (verbose) {
      if (isIn(self, WHITESPACE)) continue;
      if (self === '#') {
        for (;;) {
          const c = source.get();
          if (c === undefined || c === '\n') break;
        }
        continue;
      }
    }
    if (self[0] === '\\') {
      subpattern.push(escape(source, self, state));
    } else if (!SPECIAL_CHARS.includes(self)) {
      subpattern.push({ op: 'literal', width: [1, 1] });
    } else if (self === '[') {
      subpattern.push(parseSet(source));
    } else if (REPEAT_CHARS.includes(self)) {
      const here = source.tell();
      let min = 0;
      let max = MAXREPEAT;
      if (self === '?') max = 1;
      else if (self === '+') min = 1;
      else if (self === '{') {
        if (source.next === '}') {
          subpattern.push({ op: 'literal', width: [1, 1] });
          continue;
        }
        let lo = '';
        let hi = '';
        while (isIn(source.next, DIGITS)) lo += source.get();
        if (source.match(',')) while (isIn(source.next, DIGITS)) hi += source.get();
        else hi = lo;
        if (!source.match('}')) {
          subpattern.push({ op: 'literal', width: [1, 1] });
          source.seek(here);
          continue;
        }
        if (lo) {
          min = Number(lo);
          if (min >= MAXREPEAT) throw new PythonRegexError('the repetition number is too large'); // OverflowError: no position
        }
        if (hi) {
          max = Number(hi);
          if (max >= MAXREPEAT) throw new PythonRegexError('the repetition number is too large');
          if (max < min) throw source.error('min repeat greater than max repeat', source.tell() - here);
        }
      }
      const item = subpattern[subpattern.length - 1];
      if (!item || item.op === 'at') throw source.error('nothing to repeat', source.tell() - here + self.length);
      if (item.op === 'repeat') throw source.error('multiple repeat', source.tell() - here + self.length);
      if (!source.match('?')) source.match('+');
      const [i, j] = item.width;
      subpattern[subpattern.length - 1] = { op: 'repeat', width: [Math.min(i * min, MAXWIDTH), max === MAXREPEAT && j ? MAXWIDTH : Math.min(j * max, MAXWIDTH)] };
    } else if (self === '.') {
      subpattern.push({ op: 'any', width: [1, 1] });
    } else if (self === '(') {
      const item = parseGroup(source, state, verbose, nested, first && subpattern.length === 0);
      if (item === 'global-flags') verbose = (state.flags & VERBOSE) !== 0;
      else if (item) subpattern.push(item);
    } else {
      subpattern.push({ op: 'at', width: [0, 0] }); // ^ and $
    }
  }
  return subpattern;
}

/** A `[...]` set (the `[` read). */
function parseSet(source: Tokenizer): Item {
  const here = source.tell() - 1;
  let items = 0;
  source.match('^');
  for (;;) {
    const self = source.get();
    if (self === undefined) throw source.error('unterminated character set', source.tell() - here);
    if (self === ']' && items) break;
    const code1 = self[0] === '\\' ? escape(source, self, undefined) : literal(self.codePointAt(0));
    if (source.match('-')) {
      const that = source.get();
      if (that === undefined) throw source.error('unterminated character set', source.tell() - here);
      if (that === ']') break; // the item and a literal -
      const code2 = that[0] === '\\' ? escape(source, that, undefined) : literal(that.codePointAt(0));
      if (code1.op !== 'literal' || code2.op !== 'literal') throw source.error(`bad character range ${self}-${that}`, len(self) + 1 + len(that));
      // (a \N{...} end: its code point is for Python's Unicode database to say, and the range is not checked)
      if (code1.value !== undefined && code2.value !== undefined && code2.value < code1.value) throw source.error(`bad character range ${self}-${that}`, len(self) + 1 + len(that));
    }
    items++;
  }
  return { op: 'in', width: [1, 1] };
}

/** A `(...)` group (the `(` read): its item, 'global-flags' for `(?flags)`, or undefined when it adds none. */
function parseGroup(source: Tokenizer, state: State, verbose: boolean, nested: number, first: boolean): Item | 'global-flags' | undefined {
  const start = source.tell() - 1;
  let capture = true;
  let atomic = false;
  let name: string | undefined;
  let addFlags = 0;
  let delFlags = 0;
  if (source.match('?')) {
    const char = source.get();
    if (char === undefined) throw source.error('unexpected end of pattern');
    if (char === 'P') {
      if (source.match('<')) {
        name = source.getuntil('>', 'group name');
        source.checkgroupname(name, 1);
      } else if (source.match('=')) {
        const ref = source.getuntil(')', 'group name');
        source.checkgroupname(ref, 1);
        const gid = state.groupdict.get(ref);
        if (gid === undefined) throw source.error(`unknown group name ${pyRepr(ref)}`, len(ref) + 1);
        if (!checkgroup(state, gid)) throw source.error('cannot refer to an open group', len(ref) + 1);
        checklookbehindgroup(state, gid, source);
        return { op: 'groupref', width: state.groupwidths[gid]! };
      } else {
        const next = source.get();
        if (next === undefined) throw source.error('unexpected end of pattern');
        throw source.error(`unknown extension ?P${next}`, len(next) + 2);
      }
    } else if (char === ':') {
      capture = false;
    } else if (char === '#') {
      for (;;) {
        if (source.next === undefined) throw source.error('missing ), unterminated comment', source.tell() - start);
        if (source.get() === ')') break;
      }
      return undefined;
    } else if (char === '=' || char === '!' || char === '<') {
      let behind = false;
      let outer: number | undefined;
      if (char === '<') {
        const kind = source.get();
        if (kind === undefined) throw source.error('unexpected end of pattern');
        if (kind !== '=' && kind !== '!') throw source.error(`unknown extension ?<${kind}`, len(kind) + 2);
        behind = true;
        outer = state.lookbehindgroups;
        if (outer === undefined) state.lookbehindgroups = state.groupwidths.length;
      }
      const width = parseSub(source, state, verbose, nested + 1);
      if (behind && outer === undefined) state.lookbehindgroups = undefined;
      if (!source.match(')')) throw source.error('missing ), unterminated subpattern', source.tell() - start);
      // re._compiler's check, made once the whole pattern parsed
      if (behind && width[0] !== width[1]) state.compileError ??= 'look-behind requires fixed-width pattern';
      return { op: 'assert', width: [0, 0] };
    } else if (char === '(') {
      const condname = source.getuntil(')', 'group name');
      let condgroup: number | undefined;
      if (isIdentifier(condname)) {
        source.checkgroupname(condname, 1);
        const gid = state.groupdict.get(condname);
        if (gid === undefined) throw source.error(`unknown group name ${pyRepr(condname)}`, len(condname) + 1);
        condgroup = gid;
      } else {
        // Python 3.12 (the training image's) takes ASCII digits only here; 3.11 also read a sign, spaces, underscores
        // and non-ASCII digits through int(), with a DeprecationWarning
        if (!/^[0-9]+$/.test(condname)) throw source.error(`bad character in group name ${pyRepr(condname)}`, len(condname) + 1);
        condgroup = Number(condname);
        if (!condgroup) throw source.error('bad group number', len(condname) + 1);
        if (condgroup >= MAXGROUPS) throw source.error(`invalid group reference ${condname.replace(/^0+(?=\d)/, '')}`, len(condname) + 1);
        if (!state.grouprefpos.has(condgroup)) state.grouprefpos.set(condgroup, source.tell() - len(condname) - 1);
      }
      if (condgroup !== undefined) checklookbehindgroup(state, condgroup, source);
      const yes = sequenceWidth(parse(source, state, verbose, nested + 1));
      let no: [number, number] | undefined;
      if (source.match('|')) {
        no = sequenceWidth(parse(source, state, verbose, nested + 1));
        if (source.next === '|') throw source.error('conditional backref with more than two branches');
      }
      if (!source.match(')')) throw source.error('missing ), unterminated subpattern', source.tell() - start);
      return { op: 'groupref_exists', width: no ? [Math.min(yes[0], no[0]), Math.max(yes[1], no[1])] : [0, yes[1]] };
    } else if (char === '>') {
      capture = false;
      atomic = true;
    } else if (Object.hasOwn(FLAG, char) || char === '-') {
      const flags = parseFlags(source, state, char);
      if (flags === undefined) {
        if (!first) throw source.error('global flags not at the start of the expression', source.tell() - start);
        return 'global-flags';
      }
      [addFlags, delFlags] = flags;
      capture = false;
    } else {
      throw source.error(`unknown extension ?${char}`, len(char) + 1);
    }
  }
  let group: number | undefined;
  if (capture) {
    group = state.groupwidths.length;
    state.groupwidths.push(undefined);
    if (state.groupwidths.length > MAXGROUPS) throw source.error('too many groups', name ? len(name) + 1 : 0);
    if (name !== undefined) {
      const previous = state.groupdict.get(name);
      if (previous !== undefined) throw source.error(`redefinition of group name ${pyRepr(name)} as group ${group}; was group ${previous}`, len(name) + 1);
      state.groupdict.set(name, group);
    }
  }
  const subVerbose = (verbose || (addFlags & VERBOSE) !== 0) && (delFlags & VERBOSE) === 0;
  const width = parseSub(source, state, subVerbose, nested + 1);
  if (!source.match(')')) throw source.error('missing ), unterminated subpattern', source.tell() - start);
  if (group !== undefined) state.groupwidths[group] = width;
  return { op: atomic ? 'atomic' : 'subpattern', width };
}

/** `_parse_flags`: (added, removed) of a scoped `(?flags-flags:...)`, or undefined for global `(?flags)`. */
function parseFlags(source: Tokenizer, state: State, first: string): [number, number] | undefined {
  let char: string | undefined = first;
  let addFlags = 0;
  let delFlags = 0;
  if (char !== '-') {
    for (;;) {
      const flag = FLAG[char!];
      if (char === 'L') throw source.error("bad inline flags: cannot use 'L' flag with a str pattern");
      addFlags |= flag;
      if (flag & TYPE_FLAGS && (addFlags & TYPE_FLAGS) !== flag) throw source.error("bad inline flags: flags 'a', 'u' and 'L' are incompatible");
      char = source.get();
      if (char === undefined) throw source.error('missing -, : or )');
      if (')-:'.includes(char)) break;
      if (!Object.hasOwn(FLAG, char)) throw source.error(/^\p{L}$/u.test(char) ? 'unknown flag' : 'missing -, : or )', len(char));
    }
  }
  if (char === ')') {
    state.flags |= addFlags;
    return undefined;
  }
  if (addFlags & GLOBAL_FLAGS) throw source.error('bad inline flags: cannot turn on global flag', 1);
  if (char === '-') {
    char = source.get();
    if (char === undefined) throw source.error('missing flag');
    if (!Object.hasOwn(FLAG, char)) throw source.error(/^\p{L}$/u.test(char) ? 'unknown flag' : 'missing flag', len(char));
    for (;;) {
      const flag = FLAG[char!];
      if (flag & TYPE_FLAGS) throw source.error("bad inline flags: cannot turn off flags 'a', 'u' and 'L'");
      delFlags |= flag;
      char = source.get();
      if (char === undefined) throw source.error('missing :');
      if (char === ':') break;
      if (!Object.hasOwn(FLAG, char)) throw source.error(/^\p{L}$/u.test(char) ? 'unknown flag' : 'missing :', len(char));
    }
  }
  if (delFlags & GLOBAL_FLAGS) throw source.error('bad inline flags: cannot turn off global flag', 1);
  if (addFlags & delFlags) throw source.error('bad inline flags: flag turned on and off', 1);
  return [addFlags, delFlags];
}

/** Python's `str(re.error)`: the message, `at position N`, and the line and column of a pattern with newlines. */
function pythonMessage(pattern: string, msg: string, pos: number | undefined): string {
  if (pos === undefined) return msg;
  if (!pattern.includes('\n')) return `${msg} at position ${pos}`;
  const before = [...pattern].slice(0, pos);
  const line = before.filter((c) => c === '\n').length + 1;
  return `${msg} at position ${pos} (line ${line}, column ${pos - before.lastIndexOf('\n')})`;
}

/**
 * Why `pattern` is not a Python regular expression (compiled as the trainer compiles grpoFormatRegex:
 * `re.compile(pattern, re.DOTALL)`), or undefined when Python accepts it (or the port cannot tell). The problem is
 * Python's own message and position, and the pattern near the position.
 */
export function pythonRegexProblem(pattern: string): string | undefined {
  const state: State = { flags: 0, groupdict: new Map(), groupwidths: [undefined], grouprefpos: new Map() };
  try {
    const source = new Tokenizer(pattern);
    parseSub(source, state, false, 0);
    if ((state.flags & 256) !== 0 && (state.flags & 32) !== 0) throw new PythonRegexError('ASCII and UNICODE flags are incompatible');
    if (source.next !== undefined) throw source.error('unbalanced parenthesis');
    for (const [group, pos] of state.grouprefpos) {
      if (group >= state.groupwidths.length) throw new PythonRegexError(`invalid group reference ${group}`, pos);
    }
    if (state.compileError) throw new PythonRegexError(state.compileError);
  } catch (e) {
    if (!(e instanceof PythonRegexError)) throw e;
    const chars = [...pattern];
    const near = e.pos === undefined ? '' : ` (${JSON.stringify(chars.slice(Math.max(0, e.pos - 20), e.pos).join(''))} before it, ${JSON.stringify(chars.slice(e.pos, e.pos + 20).join(''))} from it)`;
    return `${pythonMessage(pattern, e.msg, e.pos)}${near}`;
  }
  return undefined;
}
