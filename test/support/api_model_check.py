r"""Validates AWS API requests offline against botocore's service models (the models AWS publishes
with its SDKs), as strictly as the services do.

botocore's own ParamValidator checks required and unknown members, types and minimums; the services
also refuse what is over a maximum (length of strings, lists and maps, value of numbers), outside an
enum, or not matching a member's pattern. ModelValidator adds those checks.

Patterns in the models are Java regular expressions, matched against the whole value (Java's
`matches()`: that is what makes a pattern such as `[\p{L}\p{Z}\p{N}_.:/=+\-@]*` refuse a value
with a parenthesis). `java_to_python` rewrites what the `regex` module reads differently: Java's
ASCII-only shorthands (`\d \w \s` and their negations) and POSIX classes (`\p{Alnum}`), its `.`
(which stops at every line terminator), `\x{h..h}`, and UTF-16 surrogate pairs written as two `\uXXXX`.
Across botocore's 445 models, three patterns remain that this cannot translate (a class intersection
`&&`, `\p{LD}`, a quantified quantifier); none is in a service the plane calls.

Usage:
  python api_model_check.py < requests.json
      stdin: [{"service": "sagemaker", "operation": "CreateTrainingJob", "params": {...}}, ...]
      stdout: one list of error strings per request ([] when the request is valid), e.g.
      'CreateModelPackage.CustomerMetadataProperties.baseModel: value "Llama 3.1 (8B)" does not match pattern ...'
  python api_model_check.py --untranslatable SERVICE...
      stdout: {service: [patterns of its model that cannot be compiled]}: those are not checked.
"""

import json
import sys

import botocore.session
import regex
from botocore.exceptions import UnknownServiceError
from botocore.validate import ParamValidator, ValidationErrors, range_check, type_check

# Echoed values are clipped: a request value may be megabytes long.
ECHO_MAX = 120
# Enums longer than this are listed in part (TrainingInstanceType has 200+ values).
ENUM_LIST_MAX = 12


def clip(text):
    text = str(text)
    if len(text) <= ECHO_MAX:
        return text
    return f'{text[:ECHO_MAX]}... ({len(text)} characters)'


def echo(value):
    """A value as JSON, a long string clipped inside its quotes: `"abc..." (200001 characters)`."""
    if isinstance(value, str) and len(value) > ECHO_MAX:
        return f'{json.dumps(value[:ECHO_MAX] + "...", ensure_ascii=False)} ({len(value)} characters)'
    return clip(json.dumps(value, ensure_ascii=False, default=str))


# ---------------------------------------------------------------------------------------------
# Java pattern -> Python `regex` pattern

MAX_CODE_POINT = 0x10FFFF
_ASCII_WHITESPACE = [(0x09, 0x0D), (0x20, 0x20)]  # Java \s: [ \t\n\x0B\f\r]
_DIGIT = [(0x30, 0x39)]
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_PUNCT = [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)]
# Java's POSIX character classes (US-ASCII only, unless UNICODE_CHARACTER_CLASS is set), and `all`.
_POSIX = {
    'Lower': [(0x61, 0x7A)],
    'Upper': [(0x41, 0x5A)],
    'ASCII': [(0x00, 0x7F)],
    'Alpha': [(0x41, 0x5A), (0x61, 0x7A)],
    'Digit': _DIGIT,
    'Alnum': [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    'Punct': _PUNCT,
    'Graph': [(0x21, 0x7E)],
    'Print': [(0x20, 0x7E)],
    'Blank': [(0x09, 0x09), (0x20, 0x20)],
    'Cntrl': [(0x00, 0x1F), (0x7F, 0x7F)],
    'XDigit': [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
    'Space': _ASCII_WHITESPACE,
    'all': [(0, MAX_CODE_POINT)],
}
_SHORTHANDS = {'d': _DIGIT, 'w': _WORD, 's': _ASCII_WHITESPACE}
# Java's `.` (without DOTALL/UNIX_LINES) matches anything but these line terminators.
_LINE_TERMINATORS = [(0x0A, 0x0A), (0x0D, 0x0D), (0x85, 0x85), (0x2028, 0x2029)]


def _complement(ranges):
    out, start = [], 0
    for lo, hi in sorted(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = max(start, hi + 1)
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return out


def _char(code):
    return f'\\U{code:08X}'


def _ranges(ranges):
    return ''.join(_char(lo) if lo == hi else f'{_char(lo)}-{_char(hi)}' for lo, hi in ranges)


def _is_high_surrogate(code):
    return 0xD800 <= code <= 0xDBFF


def _is_low_surrogate(code):
    return 0xDC00 <= code <= 0xDFFF


def java_to_python(pattern):
    """The `regex` module's reading of a Java pattern (see the module docstring)."""
    out = []
    in_class = 0
    i = 0
    n = len(pattern)

    def emit_set(ranges):
        out.append(_ranges(ranges) if in_class else f'[{_ranges(ranges)}]')

    while i < n:
        ch = pattern[i]
        if ch == '\\' and i + 1 < n:
            e = pattern[i + 1]
            if e in _SHORTHANDS:
                emit_set(_SHORTHANDS[e])
                i += 2
            elif e.lower() in _SHORTHANDS:
                emit_set(_complement(_SHORTHANDS[e.lower()]))
                i += 2
            elif e in 'pP' and i + 2 < n and pattern[i + 2] == '{':
                end = pattern.index('}', i)
                name = pattern[i + 3:end]
                posix = _POSIX.get(name)
                if posix is not None:
                    emit_set(posix if e == 'p' else _complement(posix))
                else:
                    out.append(pattern[i:end + 1])  # a Unicode category or script: the regex module reads it
                i = end + 1
            elif e == 'u' and regex.fullmatch(r'[0-9A-Fa-f]{4}', pattern[i + 2:i + 6]):
                code = int(pattern[i + 2:i + 6], 16)
                low = pattern[i + 6:i + 12]
                if _is_high_surrogate(code) and regex.fullmatch(r'\\u[0-9A-Fa-f]{4}', low) and _is_low_surrogate(int(low[2:], 16)):
                    # a UTF-16 surrogate pair: one code point
                    code = 0x10000 + ((code - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00)
                    i += 12
                else:
                    i += 6
                out.append(_char(code))
            elif e == 'x' and pattern.startswith('{', i + 2):
                end = pattern.index('}', i)
                out.append(_char(int(pattern[i + 3:end], 16)))
                i = end + 1
            elif e == 'Q':
                end = pattern.find('\\E', i + 2)
                end = n if end < 0 else end
                out.append(regex.escape(pattern[i + 2:end]))
                i = end + 2
            elif e == 'z':
                out.append('\\Z')
                i += 2
            else:
                out.append(pattern[i:i + 2])
                i += 2
            continue
        if ch == '[':
            if in_class:
                # Java nests classes (a union); Python's `regex` (V0) would read a literal "["
                raise ValueError('nested character class')
            in_class += 1
            out.append(ch)
            i += 1
            continue
        if ch == ']' and in_class:
            in_class -= 1
        elif ch == '&' and in_class and pattern.startswith('&&', i):
            raise ValueError('character class intersection (&&)')
        elif ch == '.' and not in_class:
            out.append(f'[^{_ranges(_LINE_TERMINATORS)}]')
            i += 1
            continue
        out.append(ch)
        i += 1
    return ''.join(out)


_compiled = {}


def compiled(pattern):
    """The compiled pattern, or None when it cannot be translated (see --untranslatable)."""
    if pattern not in _compiled:
        try:
            _compiled[pattern] = regex.compile(java_to_python(pattern))
        except (regex.error, ValueError):
            _compiled[pattern] = None
    return _compiled[pattern]


# ---------------------------------------------------------------------------------------------
# The validator


class Problems(ValidationErrors):
    """The errors of one request, kept for formatting here (botocore's report format has no values)."""

    def __init__(self):
        super().__init__()
        self.found = []

    def report(self, name, reason, **kwargs):
        super().report(name, reason, **kwargs)
        self.found.append((name, reason, kwargs))


def max_check(name, value, shape, error_type, errors):
    maximum = shape.metadata.get('max')
    if maximum is not None and value > maximum:
        errors.report(name, error_type, param=value, max_allowed=maximum)


class ModelValidator(ParamValidator):
    """botocore's validator plus what it leaves to the service: maximums, enums and patterns."""

    # A list member with any of these is validated one by one (not only type-checked).
    VALIDATED_METADATA_ATTRS = ParamValidator.VALIDATED_METADATA_ATTRS | {'max', 'enum', 'pattern'}

    def validate(self, params, shape):
        errors = Problems()
        self._validate(params, shape, errors, name='')
        return errors

    @type_check(valid_types=(str,))
    def _validate_string(self, param, shape, errors, name):
        range_check(name, len(param), shape, 'invalid length', errors)
        max_check(name, len(param), shape, 'too long', errors)
        enum = shape.metadata.get('enum')
        if enum and param not in enum:
            errors.report(name, 'not in enum', param=param, enum=enum)
            return
        pattern = shape.metadata.get('pattern')
        if pattern is not None:
            rx = compiled(pattern)
            if rx is not None and rx.fullmatch(param) is None:
                errors.report(name, 'pattern mismatch', param=param, pattern=pattern)

    def _validate_list(self, param, shape, errors, name):
        super()._validate_list(param, shape, errors, name)
        if isinstance(param, (list, tuple)):
            max_check(name, len(param), shape, 'too many', errors)

    @type_check(valid_types=(dict,))
    def _validate_map(self, param, shape, errors, name):
        # botocore checks neither the number of entries nor labels keys readably
        range_check(name, len(param), shape, 'too few', errors)
        max_check(name, len(param), shape, 'too many', errors)
        for key, value in param.items():
            label = clip(key)
            self._validate(key, shape.key, errors, f'{name} (key "{label}")')
            self._validate(value, shape.value, errors, f'{name}.{label}')

    def _validate_number(self, kind, param, shape, errors, name):
        if isinstance(param, bool):  # JSON true is not a number to the service
            errors.report(name, 'invalid type', param=param, valid_types=[kind])
            return
        getattr(super(), f'_validate_{kind}')(param, shape, errors, name)
        if isinstance(param, (int, float)):
            max_check(name, param, shape, 'too large', errors)

    def _validate_integer(self, param, shape, errors, name):
        self._validate_number('integer', param, shape, errors, name)

    def _validate_long(self, param, shape, errors, name):
        self._validate_number('long', param, shape, errors, name)

    def _validate_double(self, param, shape, errors, name):
        self._validate_number('double', param, shape, errors, name)

    def _validate_float(self, param, shape, errors, name):
        self._validate_number('float', param, shape, errors, name)


def _type_name(valid_type):
    return str(valid_type).replace("<class '", '').replace("'>", '')


def describe(operation, name, reason, kw):
    """One error as `<Operation><path>: <what is wrong>`, values clipped."""
    where = f'{operation}{name}'
    if reason == 'missing required field':
        return f'{where}: missing required member "{kw["required_name"]}"'
    if reason == 'unknown field':
        return f'{where}.{clip(kw["unknown_param"])}: unknown member (the model has: {", ".join(kw["valid_names"])})'
    if reason in ('invalid type', 'invalid type for document'):
        return f'{where}: value {echo(kw["param"])} is not of type {" or ".join(_type_name(t) for t in kw["valid_types"])}'
    if reason == 'invalid range':
        return f'{where}: value {kw["param"]} is below the minimum {kw["min_allowed"]}'
    if reason == 'too large':
        return f'{where}: value {kw["param"]} is above the maximum {kw["max_allowed"]}'
    if reason == 'invalid length':
        return f'{where}: length {kw["param"]} is below the minimum {kw["min_allowed"]}'
    if reason == 'too long':
        return f'{where}: length {kw["param"]} is above the maximum {kw["max_allowed"]}'
    if reason == 'too few':
        return f'{where}: {kw["param"]} entries, below the minimum {kw["min_allowed"]}'
    if reason == 'too many':
        return f'{where}: {kw["param"]} entries, above the maximum {kw["max_allowed"]}'
    if reason == 'not in enum':
        enum = kw['enum']
        listed = ', '.join(enum[:ENUM_LIST_MAX]) + (f', ... ({len(enum)} values)' if len(enum) > ENUM_LIST_MAX else '')
        return f'{where}: value {echo(kw["param"])} is not one of {listed}'
    if reason == 'pattern mismatch':
        return f'{where}: value {echo(kw["param"])} does not match pattern {kw["pattern"]}'
    if reason in ('more than one input', 'empty input'):
        return f'{where}: set exactly one of {", ".join(kw["members"])}'
    return f'{where}: {reason} {clip(kw)}'


def check(session, request):
    service, operation = request.get('service'), request.get('operation')
    try:
        model = session.get_service_model(service)
    except UnknownServiceError:
        return [f'{operation}: unknown service "{service}" (botocore has no model of it)']
    if operation not in model.operation_names:
        return [f'{operation}: {service} has no operation "{operation}"']
    shape = model.operation_model(operation).input_shape
    params = request.get('params', {})
    if shape is None:
        return [] if not params else [f'{operation}: takes no parameters']
    problems = ModelValidator().validate(params, shape)
    return [describe(operation, name, reason, kw) for name, reason, kw in problems.found]


def untranslatable(session, services):
    result = {}
    for service in services:
        shapes = session.get_service_data(service)['shapes'].values()
        patterns = sorted({s['pattern'] for s in shapes if 'pattern' in s})
        result[service] = [p for p in patterns if compiled(p) is None]
    return result


def main(argv):
    session = botocore.session.get_session()
    if argv[1:2] == ['--untranslatable']:
        json.dump(untranslatable(session, argv[2:]), sys.stdout)
        return 0
    requests = json.load(sys.stdin)
    json.dump([check(session, r) for r in requests], sys.stdout, ensure_ascii=False)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
