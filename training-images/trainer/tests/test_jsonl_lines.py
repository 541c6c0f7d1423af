"""JSONL lines read as the plane's validator reads them (lib/datasets/validator.ts, data.validate_file): a UTF-8 BOM
skipped, lines split on "\n" bytes only. JSON lets U+2028, U+2029 and U+0085 stand raw inside a string (json.dumps with
ensure_ascii=False and JavaScript's JSON.stringify write them so); str.splitlines() breaks a line at each of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneyard_trainer import data, evaluate
from tuneyard_trainer.generate import Prompt
from tuneyard_trainer.grpo import GrpoPreflightError, read_prompt_rows
from tuneyard_trainer.sagemaker_env import SageMakerEnv

# a prompt with every character str.splitlines() breaks at that JSON lets stand raw in a string
SEPARATORS = "\u2028\u2029\u0085"
ROWS = [
    {"prompt": f"Translate to French:{SEPARATORS}the cat", "answer": "le chat"},
    {"messages": [{"role": "user", "content": f"Translate{SEPARATORS}to French: the dog"}], "answer": "le chien"},
]


def write(path: Path, rows: list[dict], bom: bool = True) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    assert all(ch in text for ch in SEPARATORS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_the_trainers_validator_accepts_the_file(tmp_path):
    # GIVEN the file the plane validated (the trainer's validator reads lines as the plane's does)
    path = write(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": f"a{SEPARATORS}b"}, {"role": "assistant", "content": "c"}]}])
    # THEN it is valid
    assert not data.validate_file(path, "lora").errors


def test_prompt_rows_with_a_bom_and_raw_line_separators_are_read_as_written(tmp_path):
    # GIVEN a prompt-only file with a BOM and prompts holding U+2028, U+2029 and U+0085
    path = write(tmp_path / "train.jsonl", ROWS)
    # WHEN grpo and rloo read it
    for method in ("grpo", "rloo"):
        rows = read_prompt_rows(path, method)
        # THEN every row is read whole, as written
        assert rows == ROWS


def test_prompt_rows_name_the_line_of_a_bad_row_as_the_plane_numbers_it(tmp_path):
    # GIVEN a bad row after a row that holds U+2028 (one line for the plane's validator)
    path = write(tmp_path / "train.jsonl", [ROWS[0], {"messages": [{"role": "assistant", "content": "x"}]}], bom=False)
    # THEN the error names line 2
    with pytest.raises(GrpoPreflightError, match=r"line 2: messages must end with a user message"):
        read_prompt_rows(path, "rloo")


def test_grader_items_read_an_eval_file_with_a_bom_and_raw_line_separators(tmp_path):
    # GIVEN the evaluation job's eval channel: a chat file with a BOM and U+2028 in a message
    rows = [
        {"messages": [{"role": "user", "content": f"Translate{SEPARATORS}the cat"}, {"role": "assistant", "content": "le chat"}], "level": 1},
        {"messages": [{"role": "user", "content": "Translate the dog"}, {"role": "assistant", "content": "le chien"}], "level": 2},
    ]
    write(tmp_path / "input" / "data" / "eval" / "eval.jsonl", rows)
    validated = [{"messages": r["messages"]} for r in rows]
    prompts = [Prompt(i, r["messages"][:1], r["messages"][1]["content"]) for i, r in enumerate(rows)]
    # WHEN the graders' items are built
    items = evaluate._grader_items(SageMakerEnv(tmp_path), validated, prompts)
    # THEN each is the row as written (its extra field included) with its reference
    assert [item["level"] for item in items] == [1, 2]
    assert items[0]["messages"][0]["content"] == f"Translate{SEPARATORS}the cat"
    assert [item["reference"] for item in items] == ["le chat", "le chien"]
