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
ROLES = ("system", "user", "assistant")
_BLANK = " \t\r\n"


@dataclass(frozen=True)
class RowError:
    line: int
    code: str
    message: str


@dataclass
class DatasetReport:
    path: Path
    format: str | None = None
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


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a JSON object belongs to, decided by its keys (extra keys are ignored)."""
    if "messages" in row:
        return "chat"
    if "chosen" in row or "rejected" in row:
        return "preference-chat" if isinstance(row.get("prompt"), list) else "preference"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "prompt" in row or "completion" in row:
        return "prompt-completion"
    if "text" in row:
        return "text"
    return None


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


def _messages(value: Any, where: str) -> list[str]:
    """Checks every message of a list; returns their roles."""
    if not isinstance(value, list):
        raise _RowInvalid("wrong-type", f'"{where}" must be an array of messages, got {_json_type(value)}')
    roles = []
    for i, message in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(message, dict):
            raise _RowInvalid("wrong-type", f'"{at}" must be an object with "role" and "content"')
        for key in ("role", "content"):
            if key not in message:
                raise _RowInvalid("missing-field", f'missing field "{at}.{key}"')
        for key in ("role", "content"):
            if not isinstance(message[key], str):
                raise _RowInvalid("wrong-type", f'"{at}.{key}" must be a string, got {_json_type(message[key])}')
        if message["role"] not in ROLES:
            raise _RowInvalid("invalid-role", f'"{at}.role" is "{message["role"]}"; use one of {", ".join(ROLES)}')
        if _is_blank(message["content"]):
            raise _RowInvalid("empty-content", f'"{at}.content" is empty')
        roles.append(message["role"])
    return roles


def _check_turn_order(roles: list[str], where: str) -> None:
    """Optional leading system message, then user/assistant alternating, starting with user."""
    turns = roles[1:] if roles[:1] == ["system"] else roles
    for i, role in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise _RowInvalid(
                "role-order",
                f'"{where}": expected a {expected} message at position {i + len(roles) - len(turns)}, got {role} '
                "(an optional system message first, then user and assistant alternating, starting with user)",
            )


def _check_chat(row: dict[str, Any]) -> None:
    roles = _messages(row["messages"], "messages")
    _check_turn_order(roles, "messages")
    if not roles or roles[-1] != "assistant":
        raise _RowInvalid("no-assistant", '"messages" must end with an assistant message (the one trained on)')


def _check_preference(row: dict[str, Any], conversational: bool) -> None:
    if "prompt" not in row:
        raise _RowInvalid("missing-field", 'missing field "prompt"')
    if conversational:
        roles = _messages(row["prompt"], "prompt")
        _check_turn_order(roles, "prompt")
        if not roles or roles[-1] != "user":
            raise _RowInvalid("role-order", '"prompt" must end with a user message')
    else:
        _string(row, "prompt")
    for key in ("chosen", "rejected"):
        if key not in row:
            raise _RowInvalid("missing-field", f'missing field "{key}"')
        if not conversational:
            _string(row, key)
            continue
        roles = _messages(row[key], key)
        if not roles:
            raise _RowInvalid("no-assistant", f'"{key}" must hold at least one assistant message')
        if any(role != "assistant" for role in roles):
            raise _RowInvalid("role-order", f'"{key}" must hold assistant messages only')
    if _pair_key(row["chosen"]) == _pair_key(row["rejected"]):
        raise _RowInvalid("identical-pair", '"chosen" and "rejected" are identical; the pair teaches nothing')


def _pair_key(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return [(m["role"], m["content"]) for m in value]


def _check_row(row: dict[str, Any], fmt: str) -> None:
    if fmt == "chat":
        _check_chat(row)
    elif fmt == "prompt-completion":
        _string(row, "prompt")
        _string(row, "completion")
    elif fmt == "alpaca":
        _string(row, "instruction")
        _string(row, "input", required=False, allow_empty=True)
        _string(row, "output")
    elif fmt == "text":
        _string(row, "text")
    else:
        _check_preference(row, conversational=fmt == "preference-chat")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def validate_file(path: Path, method: str) -> DatasetReport:
    """Reads and checks a JSONL dataset for a training method (sft, lora, qlora or dpo)."""
    report = DatasetReport(path=path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            report.row_count += 1
            report.errors.append(RowError(number, "invalid-utf8", f"not valid UTF-8 at byte {err.start}"))
            continue
        if _is_blank(line):
            continue
        report.row_count += 1
        try:
            row = json.loads(line, parse_constant=_reject_constant)
        except ValueError as err:
            report.errors.append(RowError(number, "invalid-json", f"not valid JSON: {err}"))
            continue
        if not isinstance(row, dict):
            report.errors.append(RowError(number, "not-object", f"each line must be a JSON object, got {_json_type(row)}"))
            continue
        fmt = detect_format(row)
        if fmt is None:
            report.errors.append(
                RowError(
                    number,
                    "unknown-format",
                    f"keys {sorted(row)} match no format; use messages, prompt/completion, "
                    "instruction/input/output, text or prompt/chosen/rejected",
                )
            )
            continue
        if report.format is None:
            report.format = fmt
        elif fmt != report.format:
            report.errors.append(
                RowError(number, "mixed-format", f"row is {fmt} but the file is {report.format} (from its first row)")
            )
            continue
        try:
            _check_row(row, fmt)
        except _RowInvalid as err:
            report.errors.append(RowError(number, err.code, err.message))
            continue
        report.rows.append(row)
    file_error = _file_error(report, method)
    if file_error is not None:
        report.errors.insert(0, file_error)
    return report


def _file_error(report: DatasetReport, method: str) -> RowError | None:
    if report.row_count == 0:
        return RowError(1, "empty-file", "the file has no rows")
    if report.format is None:
        return None
    if method == "dpo" and report.format not in PREFERENCE_FORMATS:
        return RowError(
            1,
            "not-preference",
            f"method dpo needs preference pairs (prompt/chosen/rejected); the file is {report.format}",
        )
    if method != "dpo" and report.format in PREFERENCE_FORMATS:
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


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Role and content of each message, and the `weight` of an assistant message that has one (OpenAI's format:
    weight 0 keeps the message as context but trains nothing on it)."""
    turns = _plain(messages)
    for turn, message in zip(turns, messages):
        if message["role"] == "assistant" and "weight" in message:
            turn["weight"] = message["weight"]
    return turns


def to_messages(row: dict[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The conversation a row stands for; preference rows stand for their prompt and chosen response."""
    if fmt == "chat":
        return _turns(row["messages"])
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
    """SFT rows: a conversation (`messages`, rendered with the tokenizer's chat template; which tokens carry loss is
    decided when they are tokenized, see chat.loss_mask), or `text` rows as they are."""
    if fmt == "text":
        return [{"text": row["text"]} for row in rows]
    return [{"messages": to_messages(row, fmt)} for row in rows]


def render_dpo(rows: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """Conversational preference rows for TRL's DPOTrainer."""
    if fmt == "preference-chat":
        return [{"prompt": _plain(r["prompt"]), "chosen": _plain(r["chosen"]), "rejected": _plain(r["rejected"])} for r in rows]
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
