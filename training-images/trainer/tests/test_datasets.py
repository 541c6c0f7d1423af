"""The shared fixture corpus: every case in test/fixtures/datasets/cases.json, exactly."""

import json

import pytest
from conftest import FIXTURES

from tuneyard_trainer.data import DIALECTS, render_dpo, render_sft, split_rows, validate_file

CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[f"{c['file']}-{c['method']}" for c in CASES])
def test_fixture_case(case):
    report = validate_file(FIXTURES / case["file"], case["method"])
    assert {
        "format": report.format,
        "dialect": report.dialect,
        "rows": report.row_count,
        "errors": [{"line": e.line, "code": e.code} for e in report.errors],
    } == {"format": case["format"], "dialect": case["dialect"], "rows": case["rows"], "errors": case["errors"]}
    assert all(e.message for e in report.errors)


def test_every_fixture_file_has_a_case_and_every_error_code_is_covered():
    files = {p.name for p in FIXTURES.glob("*.jsonl")}
    assert files == {c["file"] for c in CASES}
    codes = {e["code"] for c in CASES for e in c["errors"]}
    assert codes == {
        "invalid-utf8", "invalid-json", "not-object", "unknown-format", "mixed-format", "missing-field",
        "wrong-type", "empty-content", "invalid-role", "role-order", "no-assistant", "invalid-tool-call",
        "invalid-weight", "unsupported-content", "not-preference", "preference-for-sft", "identical-pair", "empty-file",
    }
    assert {c["dialect"] for c in CASES if not c["errors"]} == set(DIALECTS)


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


def test_openai_chat_rows_render_to_the_internal_form_with_tools_calls_results_and_weights():
    rows = validate_file(FIXTURES / "openai-chat.jsonl", "sft").rows
    first, parallel, _, parts, hf_style = render_sft(rows, "chat")
    # developer is system; a call's arguments are an object (OpenAI gives a JSON string); the tools stay beside
    assert first["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert first["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert first["messages"][3] == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert [c["function"]["arguments"] for c in parallel["messages"][1]["tool_calls"]] == [{"city": "Rome"}, {"city": "Rome"}]
    assert [t["function"]["name"] for t in parallel["tools"]] == ["get_weather", "get_time"]
    # text parts are joined with a newline (as vLLM's OpenAI server joins them); weights stay on assistant messages
    assert parts == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour.\nOne word."},
            {"role": "assistant", "content": "Blue.", "weight": 0},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "Green.", "weight": 1},
        ]
    }
    # Hugging Face style: arguments as an object, no ids
    assert hf_style["messages"][1]["tool_calls"] == [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]


def test_sharegpt_rows_render_like_the_same_messages_rows(tmp_path):
    sharegpt = render_sft(validate_file(FIXTURES / "sharegpt.jsonl", "sft").rows, "chat")
    assert sharegpt[0] == render_sft(validate_file(FIXTURES / "chat.jsonl", "sft").rows, "chat")[0]
    assert sharegpt[2]["messages"] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue.", "weight": 0},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Green."},
    ]
    # function_call turns are assistant tool calls (a list: parallel calls), observations tool results, and the tools
    # (a JSON string of bare function definitions) OpenAI tool definitions
    weather, parallel = sharegpt[3], sharegpt[4]
    assert [m["role"] for m in weather["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert weather["messages"][2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert weather["messages"][3] == {"role": "tool", "content": '{"temperature": 18, "sky": "sunny"}'}
    assert weather["tools"][0]["type"] == "function" and weather["tools"][0]["function"]["name"] == "get_weather"
    assert [c["function"] for c in parallel["messages"][1]["tool_calls"]] == [
        {"name": "get_weather", "arguments": {"city": "Rome"}},
        {"name": "get_time", "arguments": {"city": "Rome"}},
    ]
    assert [t["function"]["name"] for t in parallel["tools"]] == ["get_weather", "get_time"]


def test_openai_preference_rows_render_to_the_conversational_pairs_they_stand_for():
    pairs = render_dpo(validate_file(FIXTURES / "openai-preference.jsonl", "dpo").rows, "preference-chat")
    assert pairs[0] == render_dpo(validate_file(FIXTURES / "preference-chat.jsonl", "dpo").rows, "preference-chat")[0]
    assert pairs[1]["prompt"][0] == {"role": "system", "content": "Be brief."}
    with_tools = pairs[2]
    assert [m["role"] for m in with_tools["prompt"]] == ["user", "assistant", "tool"]
    assert with_tools["prompt"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert with_tools["tools"][0]["function"]["name"] == "get_weather"
    assert pairs[3]["chosen"][0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}


def test_bad_tool_call_arguments_are_reported_with_file_line_and_field():
    report = validate_file(FIXTURES / "bad-invalid-tool-call.jsonl", "sft")
    text = report.describe_errors(limit=1)
    assert f"{FIXTURES / 'bad-invalid-tool-call.jsonl'}:2: invalid-tool-call: " in text
    assert '"messages[1].tool_calls[0].function.arguments" is not valid JSON' in text


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
