"""The shared fixture corpus: every case in test/fixtures/datasets/cases.json, exactly."""

import json

import pytest
from conftest import FIXTURES

from tuneyard_trainer.data import render_dpo, render_sft, split_rows, validate_file

CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[f"{c['file']}-{c['method']}" for c in CASES])
def test_fixture_case(case):
    report = validate_file(FIXTURES / case["file"], case["method"])
    assert {
        "format": report.format,
        "rows": report.row_count,
        "errors": [{"line": e.line, "code": e.code} for e in report.errors],
    } == {"format": case["format"], "rows": case["rows"], "errors": case["errors"]}
    assert all(e.message for e in report.errors)


def test_every_fixture_file_has_a_case_and_every_error_code_is_covered():
    files = {p.name for p in FIXTURES.glob("*.jsonl")}
    assert files == {c["file"] for c in CASES}
    codes = {e["code"] for c in CASES for e in c["errors"]}
    assert codes == {
        "invalid-utf8", "invalid-json", "not-object", "unknown-format", "mixed-format", "missing-field",
        "wrong-type", "empty-content", "invalid-role", "role-order", "no-assistant", "not-preference",
        "preference-for-sft", "identical-pair", "empty-file",
    }


def test_error_messages_name_file_line_and_reason():
    report = validate_file(FIXTURES / "bad-role-order.jsonl", "sft")
    text = report.describe_errors()
    assert "bad-role-order.jsonl:2: role-order: " in text
    assert "expected a user message at position 0, got assistant" in text


def test_every_format_but_text_renders_to_a_conversation():
    chat = validate_file(FIXTURES / "chat.jsonl", "sft").rows
    assert render_sft(chat, "chat")[2] == {
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
            {"role": "assistant", "content": "Green."},
        ]
    }
    alpaca = render_sft(validate_file(FIXTURES / "alpaca.jsonl", "sft").rows, "alpaca")
    assert alpaca[0]["messages"][0] == {"role": "user", "content": "Summarise the text.\n\nThe cat sat on the mat all day."}
    assert alpaca[1]["messages"][0] == {"role": "user", "content": "Say hello in Spanish."}
    assert alpaca[2]["messages"][1] == {"role": "assistant", "content": "7"}
    pc = render_sft(validate_file(FIXTURES / "prompt-completion.jsonl", "sft").rows, "prompt-completion")
    assert pc[0] == {
        "messages": [{"role": "user", "content": "Translate to French: cat"}, {"role": "assistant", "content": "chat"}]
    }
    text = render_sft(validate_file(FIXTURES / "text.jsonl", "sft").rows, "text")
    assert text[0] == {"text": "The quick brown fox jumps over the lazy dog."}


def test_an_assistant_message_keeps_its_weight_and_other_keys_are_dropped():
    row = {
        "messages": [
            {"role": "user", "content": "Hi", "weight": 1, "name": "ann"},
            {"role": "assistant", "content": "Hello", "weight": 0},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye", "name": "bot"},
        ]
    }
    assert render_sft([row], "chat")[0]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "weight": 0},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye"},
    ]


def test_both_preference_shapes_render_to_conversational_pairs():
    strings = render_dpo(validate_file(FIXTURES / "preference.jsonl", "dpo").rows, "preference")
    assert strings[0] == {
        "prompt": [{"role": "user", "content": "What is 2 + 2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    chats = render_dpo(validate_file(FIXTURES / "preference-chat.jsonl", "dpo").rows, "preference-chat")
    assert chats[0] == strings[0]
    assert chats[1]["prompt"][0] == {"role": "system", "content": "Be brief."}


def test_split_is_seeded_and_holds_out_at_least_one_row():
    rows = list(range(20))
    train, held = split_rows(rows, 0.1, seed=7)
    assert len(held) == 2 and sorted(train + held) == rows
    assert split_rows(rows, 0.1, seed=7) == (train, held)
    assert split_rows(rows, 0.1, seed=8) != (train, held)
    assert len(split_rows(rows[:3], 0.01, seed=1)[1]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_rows(rows[:1], 0.5, seed=1)
