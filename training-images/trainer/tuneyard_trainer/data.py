"""Dataset formats: validation of JSONL files and rendering to the shapes TRL expects.

One definition of each format. The TypeScript validator implements the same rules and both are
tested against the shared corpus in test/fixtures/datasets (rules: its README.md).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("chat", "prompt-completion", "alpaca", "text", "preference", "preference-chat")
PREFERENCE_FORMATS = ("preference", "preference-chat")
# The dialects (the shapes users bring) and the format each maps onto: one definition, shared with the TypeScript
# validator (lib/datasets/formats.ts imports the same file).
DEFINITION = json.loads((Path(__file__).parent / "formats.json").read_text(encoding="utf-8"))
DIALECTS = tuple(DEFINITION["dialects"])
_BLANK = " \t\r\n"
_ORDER = (
    "an optional system message first, then user and assistant alternating, starting with user; an assistant "
    "message with tool_calls is followed by one tool message per call, then an assistant message"
)


@dataclass(frozen=True)
class RowError:
    line: int
    code: str
    message: str


@dataclass
class DatasetReport:
    """A checked file: its format and dialect, and its valid rows in the internal form of the format (`to_internal`)."""

    path: Path
    format: str | None = None
    dialect: str | None = None
    row_count: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def describe_errors(self, limit: int = 10) -> str:
        shown = [f"{self.path}:{e.line}: {e.code}: {e.message}" for e in self.errors[:limit]]
        more = len(self.errors) - limit
        if more > 0:
            shown.append(f"... and {more} more")
        return "\n".join(shown)


class _RowInvalid(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def format_of(dialect: str) -> str:
    return DEFINITION["dialects"][dialect]["format"]


def detect_dialect(row: dict[str, Any]) -> str | None:
    """The dialect a JSON object is written in, decided by its keys (extra keys are ignored)."""
    for rule in DEFINITION["detection"]:
        if not any(key in row for key in rule["anyKey"]):
            continue
        if "arrayKey" in rule and not isinstance(row.get(rule["arrayKey"]), list):
            continue
        return rule["dialect"]
    return None


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a JSON object belongs to, decided by its keys (extra keys are ignored)."""
    dialect = detect_dialect(row)
    return None if dialect is None else format_of(dialect)


def _is_blank(value: str) -> bool:
    return value.strip(_BLANK) == ""


def _string(row: dict[str, Any], key: str, *, required: bool = True, allow_empty: bool = False) -> None:
    if key not in row:
        if required:
            raise _RowInvalid("missing-field", f'missing field "{key}"')
        return
    value = row[key]
    if not isinstance(value, str):
        raise _RowInvalid("wrong-type", f'"{key}" must be a string, got {_json_type(value)}')
    if not allow_empty and _is_blank(value):
        raise _RowInvalid("empty-content", f'"{key}" is empty')


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


_ABSENT = object()


def _field_at(row: dict[str, Any], path: str) -> Any:
    """The value at a dotted field path (`input.messages`), None when absent; an absent or non-object parent is an
    error. (A JSON null reads as absent: only optional fields (`tools`) are read this way, or checked after.)"""
    keys = path.split(".")
    value: Any = row
    for i, key in enumerate(keys):
        if i > 0:
            at = ".".join(keys[:i])
            if value is _ABSENT:
                raise _RowInvalid("missing-field", f'missing field "{at}"; it holds "{path}"')
            if not isinstance(value, dict):
                raise _RowInvalid("wrong-type", f'"{at}" must be an object, got {_json_type(value)}')
        value = value.get(key, _ABSENT)
    return value


def _parts_text(parts: list[Any], at: str) -> str:
    """The text of OpenAI content parts; only text parts (Tuneyard trains text models)."""
    texts = []
    for j, part in enumerate(parts):
        pat = f"{at}[{j}]"
        if not isinstance(part, dict):
            raise _RowInvalid("wrong-type", f'"{pat}" must be a content part like {{"type":"text","text":"..."}}')
        if "type" not in part:
            raise _RowInvalid("missing-field", f'missing field "{pat}.type"')
        if not isinstance(part["type"], str):
            raise _RowInvalid("wrong-type", f'"{pat}.type" must be a string, got {_json_type(part["type"])}')
        key = DEFINITION["contentParts"].get(part["type"])
        if key is None:
            raise _RowInvalid(
                "unsupported-content",
                f'"{pat}" is a {json.dumps(part["type"])} part; Tuneyard trains on text only: give the message as '
                "text parts or a string, or drop the row",
            )
        if key not in part:
            raise _RowInvalid("missing-field", f'missing field "{pat}.{key}"')
        if not isinstance(part[key], str):
            raise _RowInvalid("wrong-type", f'"{pat}.{key}" must be a string, got {_json_type(part[key])}')
        texts.append(part[key])
    return "\n".join(texts)


def _tool_arguments(value: Any, at: str) -> dict[str, Any]:
    """Arguments as OpenAI gives them (a string holding a JSON object) or as Hugging Face datasets do (the object)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise _RowInvalid("wrong-type", f'"{at}" must be a string holding a JSON object (or the object), got {_json_type(value)}')
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except ValueError as err:
        raise _RowInvalid(
            "invalid-tool-call",
            f'"{at}" is not valid JSON ({err}); give the arguments as a JSON object, e.g. "{{\\"city\\": \\"Paris\\"}}"',
        ) from None
    if not isinstance(parsed, dict):
        raise _RowInvalid("invalid-tool-call", f'"{at}" holds a JSON {_json_type(parsed)}; the arguments must be a JSON object')
    return parsed


def _tool_calls(value: Any, at: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _RowInvalid("wrong-type", f'"{at}" must be an array of calls, got {_json_type(value)}')
    if not value:
        raise _RowInvalid("invalid-tool-call", f'"{at}" is empty; give at least one call or drop the key')
    calls: list[dict[str, Any]] = []
    for j, call in enumerate(value):
        cat = f"{at}[{j}]"
        if not isinstance(call, dict):
            raise _RowInvalid("wrong-type", f'"{cat}" must be an object {{"id","type":"function","function":{{...}}}}')
        if "id" in call and not isinstance(call["id"], str):
            raise _RowInvalid("wrong-type", f'"{cat}.id" must be a string, got {_json_type(call["id"])}')
        if "id" in call and any(c.get("id") == call["id"] for c in calls):
            raise _RowInvalid("invalid-tool-call", f'"{cat}.id" {json.dumps(call["id"])} is used by an earlier call of the message')
        if "type" in call and call["type"] != "function":
            raise _RowInvalid("invalid-tool-call", f'"{cat}.type" is {json.dumps(call["type"])}; only "function" calls are supported')
        if "function" not in call:
            raise _RowInvalid("missing-field", f'missing field "{cat}.function"')
        fn = call["function"]
        if not isinstance(fn, dict):
            raise _RowInvalid("wrong-type", f'"{cat}.function" must be an object {{"name","arguments"}}, got {_json_type(fn)}')
        if "name" not in fn:
            raise _RowInvalid("missing-field", f'missing field "{cat}.function.name"')
        if not isinstance(fn["name"], str):
            raise _RowInvalid("wrong-type", f'"{cat}.function.name" must be a string, got {_json_type(fn["name"])}')
        if _is_blank(fn["name"]):
            raise _RowInvalid("empty-content", f'"{cat}.function.name" is empty')
        if "arguments" not in fn:
            raise _RowInvalid("missing-field", f'missing field "{cat}.function.arguments"; give "{{}}" for no arguments')
        internal = {"type": "function", "function": {"name": fn["name"], "arguments": _tool_arguments(fn["arguments"], f"{cat}.function.arguments")}}
        if "id" in call:
            internal = {"id": call["id"], **internal}
        calls.append(internal)
    return calls


def _encoded_calls(text: str, at: str) -> list[dict[str, Any]]:
    """ShareGPT's `function_call` turn: its value holds the call, or a list of calls, as JSON {"name", "arguments"}."""
    shape = 'a function_call turn holds {"name": "...", "arguments": {...}} (or a list of them) as JSON'
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ValueError as err:
        raise _RowInvalid("invalid-tool-call", f'"{at}" is not valid JSON ({err}); {shape}') from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls:
        raise _RowInvalid("invalid-tool-call", f'"{at}" holds no call; {shape}')
    internal = []
    for j, call in enumerate(calls):
        cat = f"{at}[{j}]" if isinstance(parsed, list) else at
        if not (isinstance(call, dict) and isinstance(call.get("name"), str) and not _is_blank(call["name"]) and "arguments" in call):
            raise _RowInvalid("invalid-tool-call", f'"{cat}" is not a call with a "name" and "arguments"; {shape}')
        arguments = _tool_arguments(call["arguments"], f"{cat}.arguments")
        internal.append({"type": "function", "function": {"name": call["name"], "arguments": arguments}})
    return internal


def _message(value: Any, at: str, shape: dict[str, Any]) -> dict[str, Any]:
    """Checks one message and returns it in the internal form (OpenAI's chat message with text content)."""
    role_key, content_key = shape["role"], shape["content"]
    if not isinstance(value, dict):
        raise _RowInvalid("wrong-type", f'"{at}" must be an object with "{role_key}" and "{content_key}"')
    calls = value.get("tool_calls")
    if role_key not in value:
        raise _RowInvalid("missing-field", f'missing field "{at}.{role_key}"')
    if calls is None and content_key not in value:
        raise _RowInvalid("missing-field", f'missing field "{at}.{content_key}"')
    role, content = value[role_key], value.get(content_key)
    if not isinstance(role, str):
        raise _RowInvalid("wrong-type", f'"{at}.{role_key}" must be a string, got {_json_type(role)}')
    if not isinstance(content, (str, list)) and not (calls is not None and content is None):
        raise _RowInvalid("wrong-type", f'"{at}.{content_key}" must be a string or an array of text parts, got {_json_type(content)}')
    call_role = role not in shape["roles"] and role in shape.get("callRoles", ())
    internal = "assistant" if call_role else shape["roles"].get(role)
    if internal is None:
        raise _RowInvalid(
            "invalid-role",
            shape["refusedRoles"].get(role) or f'"{at}.{role_key}" is "{role}"; use one of {", ".join(shape["roles"])}',
        )
    text = content if isinstance(content, str) else _parts_text(content, f"{at}.{content_key}") if isinstance(content, list) else ""
    message: dict[str, Any] = {"role": internal, "content": text}
    if call_role:
        message["content"] = ""
        message["tool_calls"] = _encoded_calls(text, f"{at}.{content_key}")
    elif calls is not None:
        if internal != "assistant":
            raise _RowInvalid("invalid-tool-call", f'"{at}" is a {role} message with "tool_calls"; only assistant messages call tools')
        message["tool_calls"] = _tool_calls(calls, f"{at}.tool_calls")
    elif _is_blank(text):
        raise _RowInvalid("empty-content", f'"{at}.{content_key}" is empty')
    if internal == "tool" and "tool_call_id" in value:
        if not isinstance(value["tool_call_id"], str):
            raise _RowInvalid("wrong-type", f'"{at}.tool_call_id" must be a string, got {_json_type(value["tool_call_id"])}')
        message["tool_call_id"] = value["tool_call_id"]
    if "weight" in value:
        weight = value["weight"]
        if internal != "assistant":
            raise _RowInvalid("invalid-weight", f'"{at}.weight": message {at} is a {role} message; only assistant messages take a weight')
        if isinstance(weight, bool) or weight not in (0, 1):
            raise _RowInvalid("invalid-weight", f'"{at}.weight" is {json.dumps(weight)}; use 0 (context only) or 1 (trained on)')
        message["weight"] = int(weight)
    return message


def _messages(value: Any, where: str, shape: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks every message of a conversation (in its dialect's keys); returns them in the internal form."""
    if not isinstance(value, list):
        raise _RowInvalid("wrong-type", f'"{where}" must be an array of messages, got {_json_type(value)}')
    return [_message(message, f"{where}[{i}]", shape) for i, message in enumerate(value)]


def _check_turn_order(messages: list[dict[str, Any]], where: str) -> str:
    """An optional leading system message, then user/assistant alternating, starting with user; after an assistant
    message with tool calls, one tool message per call (matched by tool_call_id, else in order), then assistant.
    Returns the role the next message would need."""
    expected, open_calls, calls_at = "user", [], 0
    for i, message in enumerate(messages):
        role = message["role"]
        if i == 0 and role == "system":
            continue
        if role != expected:
            raise _RowInvalid("role-order", f'"{where}": expected a {expected} message at position {i}, got {role} ({_ORDER})')
        if role == "user":
            expected = "assistant"
        elif role == "assistant":
            open_calls, calls_at = list(message.get("tool_calls", [])), i
            expected = "tool" if open_calls else "user"
        else:
            call_id = message.get("tool_call_id")
            answered = 0 if call_id is None else next((k for k, c in enumerate(open_calls) if c.get("id") == call_id), -1)
            if answered == -1:
                ids = ", ".join(json.dumps(c.get("id")) for c in open_calls)
                raise _RowInvalid(
                    "invalid-tool-call",
                    f'"{where}[{i}].tool_call_id" is {json.dumps(call_id)}, which answers no open call of '
                    f"{where}[{calls_at}] (open: {ids}); use the id of the call it answers",
                )
            open_calls.pop(answered)
            expected = "tool" if open_calls else "assistant"
    return expected


def _tools(value: Any, at: str, functions: bool = False) -> list[dict[str, Any]] | None:
    if value is _ABSENT or value is None:
        return None
    if functions:
        # Bare function definitions, or a JSON string of them (ShareGPT as LLaMA-Factory writes it; "" for none).
        if isinstance(value, str):
            if _is_blank(value):
                return None
            try:
                value = json.loads(value, parse_constant=_reject_constant)
            except ValueError as err:
                raise _RowInvalid("invalid-tool-call", f'"{at}" is not valid JSON ({err}); give a list of function definitions') from None
        if isinstance(value, list):
            value = [{"type": "function", "function": t} if isinstance(t, dict) and "function" not in t else t for t in value]
    if not isinstance(value, list):
        raise _RowInvalid("wrong-type", f'"{at}" must be an array of {{"type":"function","function":{{...}}}} tools, got {_json_type(value)}')
    for j, tool in enumerate(value):
        tat = f"{at}[{j}]"
        if not isinstance(tool, dict):
            raise _RowInvalid("wrong-type", f'"{tat}" must be an object {{"type":"function","function":{{...}}}}')
        if "type" in tool and tool["type"] != "function":
            raise _RowInvalid("invalid-tool-call", f'"{tat}.type" is {json.dumps(tool["type"])}; only "function" tools are supported')
        if "function" not in tool:
            raise _RowInvalid("missing-field", f'missing field "{tat}.function"')
        fn = tool["function"]
        if not isinstance(fn, dict):
            raise _RowInvalid("wrong-type", f'"{tat}.function" must be an object, got {_json_type(fn)}')
        if "name" not in fn:
            raise _RowInvalid("missing-field", f'missing field "{tat}.function.name"')
        if not isinstance(fn["name"], str):
            raise _RowInvalid("wrong-type", f'"{tat}.function.name" must be a string, got {_json_type(fn["name"])}')
        if _is_blank(fn["name"]):
            raise _RowInvalid("empty-content", f'"{tat}.function.name" is empty')
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise _RowInvalid("wrong-type", f'"{tat}.function.parameters" must be a JSON Schema object')
    return value


def _shape(dialect: str) -> dict[str, Any]:
    return DEFINITION["conversations"][DEFINITION["dialects"][dialect]["conversation"]]


def _check_chat(row: dict[str, Any], dialect: str) -> dict[str, Any]:
    shape, fields = _shape(dialect), DEFINITION["dialects"][dialect]["fields"]
    system: list[dict[str, Any]] = []
    if "system" in fields and fields["system"] in row:
        value = row[fields["system"]]
        if not isinstance(value, str):
            raise _RowInvalid("wrong-type", f'"{fields["system"]}" must be a string, got {_json_type(value)}')
        if not _is_blank(value):
            system = [{"role": "system", "content": value}]
    value = _field_at(row, fields["messages"])
    if value is _ABSENT:
        raise _RowInvalid("missing-field", f'missing field "{fields["messages"]}"')
    messages = system + _messages(value, fields["messages"], shape)
    _check_turn_order(messages, fields["messages"])
    if not messages or messages[-1]["role"] != "assistant":
        raise _RowInvalid("no-assistant", f'"{fields["messages"]}" must end with an assistant message (the one trained on)')
    functions = DEFINITION["dialects"][dialect].get("functionTools", False)
    tools = _tools(_field_at(row, fields["tools"]), fields["tools"], functions) if "tools" in fields else None
    return {"messages": messages} if tools is None else {"messages": messages, "tools": tools}


def _pair_key(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return [(m["role"], m["content"], [c["function"] for c in m.get("tool_calls", [])]) for m in value]


def _check_preference(row: dict[str, Any]) -> dict[str, Any]:
    if "prompt" not in row:
        raise _RowInvalid("missing-field", 'missing field "prompt"')
    _string(row, "prompt")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise _RowInvalid("missing-field", f'missing field "{key}"')
        _string(row, key)
    if row["chosen"] == row["rejected"]:
        raise _RowInvalid("identical-pair", '"chosen" and "rejected" are identical; the pair teaches nothing')
    return row


def _check_preference_chat(row: dict[str, Any], dialect: str) -> dict[str, Any]:
    shape, fields = _shape(dialect), DEFINITION["dialects"][dialect]["fields"]
    value = _field_at(row, fields["prompt"])
    if value is _ABSENT:
        raise _RowInvalid("missing-field", f'missing field "{fields["prompt"]}"')
    prompt = _messages(value, fields["prompt"], shape)
    if _check_turn_order(prompt, fields["prompt"]) != "assistant":
        raise _RowInvalid(
            "role-order",
            f'"{fields["prompt"]}" must end with a user message, or with the tool results of the last assistant '
            "message's calls",
        )
    tools = _tools(_field_at(row, fields["tools"]), fields["tools"])
    responses = []
    for key in (fields["chosen"], fields["rejected"]):
        if key not in row:
            raise _RowInvalid("missing-field", f'missing field "{key}"')
        messages = _messages(row[key], key, shape)
        if not messages:
            raise _RowInvalid("no-assistant", f'"{key}" must hold at least one assistant message')
        if any(m["role"] != "assistant" for m in messages):
            raise _RowInvalid("role-order", f'"{key}" must hold assistant messages only')
        responses.append(messages)
    chosen, rejected = responses
    if _pair_key(chosen) == _pair_key(rejected):
        raise _RowInvalid("identical-pair", f'"{fields["chosen"]}" and "{fields["rejected"]}" are identical; the pair teaches nothing')
    internal = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return internal if tools is None else {**internal, "tools": tools}


def to_internal(row: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Checks a row of a known dialect (raises _RowInvalid with its first problem) and returns it in the internal
    form of its format: chat `{"messages", "tools"?}`, preference-chat `{"prompt", "chosen", "rejected", "tools"?}`
    (OpenAI chat messages: roles system/user/assistant/tool, text content, tool-call arguments as objects, assistant
    `weight`), the other formats as they are."""
    fmt = format_of(dialect)
    if fmt == "chat":
        return _check_chat(row, dialect)
    if fmt == "prompt-completion":
        _string(row, "prompt")
        _string(row, "completion")
    elif fmt == "alpaca":
        _string(row, "instruction")
        _string(row, "input", required=False, allow_empty=True)
        _string(row, "output")
    elif fmt == "text":
        _string(row, "text")
    elif fmt == "preference":
        return _check_preference(row)
    else:
        return _check_preference_chat(row, dialect)
    return row


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def jsonl_lines(path: Path) -> list[tuple[int, str | UnicodeDecodeError]]:
    """A JSONL file's lines as the plane's validator (lib/datasets/validator.ts) reads them, blank ones left out: a
    UTF-8 BOM skipped, split at "\n" bytes only (JSON lets U+2028, U+2029 and U+0085 stand raw inside a string, where
    str.splitlines() would break the row), each line decoded on its own. (line number, text, or the decoding error of a
    line that is not UTF-8)."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines: list[tuple[int, str | UnicodeDecodeError]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            lines.append((number, err))
            continue
        if not _is_blank(line):
            lines.append((number, line))
    return lines


def validate_file(path: Path, method: str) -> DatasetReport:
    """Reads and checks a JSONL dataset for a training method (sft, lora, qlora, dpo or reward); its valid rows in the
    internal form of their format (`to_internal`)."""
    report = DatasetReport(path=path)
    for number, line in jsonl_lines(path):
        report.row_count += 1
        if isinstance(line, UnicodeDecodeError):
            report.errors.append(RowError(number, "invalid-utf8", f"not valid UTF-8 at byte {line.start}"))
            continue
        try:
            row = json.loads(line, parse_constant=_reject_constant)
        except ValueError as err:
            report.errors.append(RowError(number, "invalid-json", f"not valid JSON: {err}"))
            continue
        if not isinstance(row, dict):
            report.errors.append(RowError(number, "not-object", f"each line must be a JSON object, got {_json_type(row)}"))
            continue
        dialect = detect_dialect(row)
        if dialect is None:
            report.errors.append(
                RowError(
                    number,
                    "unknown-format",
                    f"keys {sorted(row)} match no format; use messages, conversations (ShareGPT), prompt/completion, "
                    "instruction/input/output, text, prompt/chosen/rejected or input/preferred_output/"
                    "non_preferred_output",
                )
            )
            continue
        if report.dialect is None:
            report.dialect, report.format = dialect, format_of(dialect)
        elif dialect != report.dialect:
            report.errors.append(
                RowError(
                    number,
                    "mixed-format",
                    f"row is {dialect} ({format_of(dialect)}) but the file is {report.dialect} ({report.format}) "
                    "from its first row; use one format per file",
                )
            )
            continue
        try:
            internal = to_internal(row, dialect)
        except _RowInvalid as err:
            report.errors.append(RowError(number, err.code, err.message))
            continue
        report.rows.append(internal)
    file_error = _file_error(report, method)
    if file_error is not None:
        report.errors.insert(0, file_error)
    return report


def _file_error(report: DatasetReport, method: str) -> RowError | None:
    if report.row_count == 0:
        return RowError(1, "empty-file", "the file has no rows")
    if report.format is None:
        return None
    if method in ("dpo", "reward") and report.format not in PREFERENCE_FORMATS:
        return RowError(
            1,
            "not-preference",
            f"method {method} needs preference pairs (prompt/chosen/rejected); the file is {report.format}",
        )
    if method not in ("dpo", "reward") and report.format in PREFERENCE_FORMATS:
        return RowError(
            1,
            "preference-for-sft",
            f"method {method} trains on responses, but the file holds preference pairs; use method dpo",
        )
    return None


# Rendering -------------------------------------------------------------------------------------

def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _alpaca_prompt(row: dict[str, Any]) -> str:
    extra = row.get("input", "")
    return f"{row['instruction']}\n\n{extra}" if extra else row["instruction"]


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a chat template takes them: role, content, and the tool calls or the id of the call answered."""
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def _with_tools(conversation: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The row's tool definitions beside a conversation, when it has some (rendered by the chat template)."""
    return {**conversation, "tools": row["tools"]} if row.get("tools") else conversation


def to_messages(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The conversation a row (in the internal form of its format) stands for; preference rows stand for their prompt
    and chosen response. A chat message keeps its tool calls, the id of the call a tool message answers and, on an
    assistant message, its `weight` (OpenAI's format: weight 0 keeps the message as context but trains nothing on
    it)."""
    if fmt == "chat":
        return [dict(m) for m in row["messages"]]
    if fmt == "prompt-completion":
        return [_user(row["prompt"]), _assistant(row["completion"])]
    if fmt == "alpaca":
        return [_user(_alpaca_prompt(row)), _assistant(row["output"])]
    if fmt == "preference":
        return [_user(row["prompt"]), _assistant(row["chosen"])]
    if fmt == "preference-chat":
        return _plain(row["prompt"]) + _plain(row["chosen"])
    raise ValueError(f"{fmt} rows are not conversations")


def render_sft(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """SFT rows: a conversation (`messages`, with the row's `tools`, rendered with the tokenizer's chat template;
    which tokens carry loss is decided when they are tokenized, see chat.loss_mask), or `text` rows as they are."""
    if fmt == "text":
        return [{"text": row["text"]} for row in rows]
    return [_with_tools({"messages": to_messages(row, fmt)}, row) for row in rows]


def render_dpo(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """Conversational preference rows for TRL's DPOTrainer (with the row's `tools`; see chat.preference_dataset)."""
    if fmt == "preference-chat":
        return [
            _with_tools({"prompt": _plain(r["prompt"]), "chosen": _plain(r["chosen"]), "rejected": _plain(r["rejected"])}, r)
            for r in rows
        ]
    return [
        {"prompt": [_user(r["prompt"])], "chosen": [_assistant(r["chosen"])], "rejected": [_assistant(r["rejected"])]}
        for r in rows
    ]


def split_rows(rows: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded train/eval split; at least one row on each side."""
    if len(rows) < 2:
        raise ValueError(
            f"the train channel has {len(rows)} valid row(s); at least 2 are needed to hold one out for evaluation "
            "(or provide an eval channel)"
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = min(max(1, round(len(rows) * fraction)), len(rows) - 1)
    eval_idx = set(order[:held])
    return [r for i, r in enumerate(rows) if i not in eval_idx], [r for i, r in enumerate(rows) if i in eval_idx]
