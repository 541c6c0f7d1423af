"""Rows longer than max_length: counted (training_config.json, the overlong_rows metric line) and dropped, the
default, so that every trained row ends with the end-of-turn token the model must learn to stop on, or truncated
(overlong_rows=truncate: TRL keeps their first max_length tokens)."""

import json
import re

import pytest
from conftest import FAST, dpo_rows, sft_rows
from datasets import Dataset
from transformers import AutoTokenizer

from tuneyard_trainer import train
from tuneyard_trainer.chat import fit_to_length, sft_dataset
from tuneyard_trainer.config import from_hyperparameters
from tuneyard_trainer.data import render_dpo, render_sft
from tuneyard_trainer.sagemaker_env import SageMakerEnv

MAX_LENGTH = FAST["max_length"]  # 64
STORY = "The cat and the dog are near the road. "


def long_chat(animal: str, repeat: int = 8) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"Describe the {animal}."},
            {"role": "assistant", "content": STORY * repeat},
        ]
    }


LONG_CHATS = [long_chat("cat"), long_chat("dog", 12)]


def chat_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def test_default_is_drop():
    assert from_hyperparameters({"base_model": "m"}).overlong_rows == "drop"
    assert from_hyperparameters({"base_model": "m", "overlong_rows": "truncate"}).overlong_rows == "truncate"


def test_a_conversation_is_overlong_when_its_tokens_exceed_max_length(base_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    rows = render_sft(sft_rows()[:3] + LONG_CHATS, "chat")
    lengths = [chat_length(tokenizer, row["messages"]) for row in rows]
    assert lengths[:3] == [n for n in lengths[:3] if n <= MAX_LENGTH] and all(n > MAX_LENGTH for n in lengths[3:])
    dataset = sft_dataset(rows, tokenizer, True)

    kept, overlong = fit_to_length(dataset, tokenizer, MAX_LENGTH, "drop")
    assert overlong == 2 and len(kept) == 3
    assert [len(ids) for ids in kept["input_ids"]] == lengths[:3]

    same, overlong = fit_to_length(dataset, tokenizer, MAX_LENGTH, "truncate")
    assert overlong == 2 and same is dataset
    # a row of exactly max_length tokens fits
    assert fit_to_length(dataset, tokenizer, max(lengths), "drop")[1] == 0
    assert fit_to_length(dataset, tokenizer, max(lengths) - 1, "drop")[1] == 1


def test_a_text_row_counts_the_eos_trl_appends(base_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    text = "The cat and the dog"
    length = len(tokenizer(text + tokenizer.eos_token)["input_ids"])
    dataset = sft_dataset([{"text": text}], tokenizer, True)
    assert fit_to_length(dataset, tokenizer, length, "drop")[1] == 0
    assert fit_to_length(dataset, tokenizer, length - 1, "drop")[1] == 1


def test_a_preference_pair_is_overlong_when_its_prompt_and_longer_response_are(base_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    pairs = render_dpo(dpo_rows()[:2] + [{"prompt": "Describe the cat.", "chosen": "A cat.", "rejected": STORY * 8}], "preference")
    longest = [
        max(chat_length(tokenizer, pair["prompt"] + pair[side]) for side in ("chosen", "rejected")) for pair in pairs
    ]
    assert longest[2] > MAX_LENGTH >= max(longest[:2])
    dataset = Dataset.from_list(pairs)
    kept, overlong = fit_to_length(dataset, tokenizer, MAX_LENGTH, "drop")
    assert overlong == 1 and kept["prompt"] == dataset["prompt"][:2]
    assert fit_to_length(dataset, tokenizer, longest[2], "drop")[1] == 0


@pytest.mark.parametrize("method", ["lora", "dpo"])
@pytest.mark.parametrize("rule", ["drop", "truncate"])
def test_the_trainer_drops_or_truncates_overlong_rows(job, method, rule):
    """What TRL's trainer holds after preparation: without the overlong rows (drop), or with them cut to max_length."""
    if method == "dpo":
        long = [{"prompt": f"Describe the {a}.", "chosen": STORY * 8, "rejected": "I do not know."} for a in ("cat", "dog")]
        train_rows, eval_rows = dpo_rows() + long, dpo_rows()[:4] + long[:1]
    else:
        train_rows, eval_rows = sft_rows() + LONG_CHATS, sft_rows()[:4] + LONG_CHATS[:1]
    job.configure({**FAST, "method": method, "overlong_rows": rule}, train=train_rows, eval=eval_rows)
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    trainer = train.build_trainer(inputs, env, train.load_tokenizer(inputs.model_source, inputs.train.format), [])
    assert inputs.overlong_rows == {"train": 2, "eval": 1}
    kept = {"drop": (20, 4), "truncate": (22, 5)}[rule]
    assert (len(trainer.train_dataset), len(trainer.eval_dataset)) == kept
    if method == "lora":
        assert max(len(ids) for ids in trainer.train_dataset["input_ids"]) <= MAX_LENGTH


def test_overlong_rows_are_reported_in_training_config_and_a_metric_line(job, capsys):
    job.configure({**FAST, "method": "lora", "num_train_epochs": 1}, train=sft_rows() + LONG_CHATS, eval=LONG_CHATS[:1] + sft_rows()[:4])
    assert job.run() == 0, job.failure
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["config"]["overlong_rows"] == "drop"
    assert written["dataset"]["overlong_rows"] == {"train": 2, "eval": 1}
    lines = [line for line in capsys.readouterr().out.splitlines() if re.search(r" overlong_rows=", line)]
    assert lines == ["tuneyard-metrics: step=0 overlong_rows=2"]


def test_a_train_set_that_is_all_overlong_fails_before_training_with_the_fix(job):
    job.configure({**FAST, "method": "lora"}, train=LONG_CHATS * 2)
    assert job.run() == 1
    assert "every row of the train split is longer than max_length=64 tokens" in job.failure
    assert "raise max_length or set overlong_rows=truncate" in job.failure
