"""Bad configs, bad rows and impossible jobs fail before any weights load, with output/failure and exit 1."""

import shutil

import pytest
import torch
from conftest import FAST, FIXTURES, sft_rows


def test_bad_config_fails_in_a_real_process_with_the_reason_and_exit_code(job):
    job.configure({**FAST, "learning_rat": "1e-4"}, train=sft_rows())
    process = job.popen()
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1, output
    assert job.failure.startswith("train failed: ConfigError: unknown hyperparameter \"learning_rat\" (did you mean \"learning_rate\"?)")
    assert not job.model_dir.exists() and not job.checkpoints.exists()


@pytest.mark.parametrize(
    "fixture, hyper, expected",
    [
        ("bad-role-order.jsonl", {}, "train.jsonl:2: role-order: "),
        ("bad-invalid-json.jsonl", {}, "train.jsonl:3: invalid-json: "),
        ("chat.jsonl", {"method": "dpo"}, "train.jsonl:1: not-preference: method dpo needs preference pairs"),
        ("preference.jsonl", {"method": "lora"}, "train.jsonl:1: preference-for-sft: "),
        ("bad-empty-file.jsonl", {}, "train.jsonl:1: empty-file: "),
    ],
)
def test_bad_rows_fail_with_file_line_and_reason(job, fixture, hyper, expected):
    job.configure({**FAST, **hyper})
    target = job.root / "input" / "data" / "train" / "train.jsonl"
    target.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / fixture, target)
    assert job.run() == 1
    assert "PreflightError: channel train: " in job.failure and expected in job.failure
    assert not job.model_dir.exists()


def test_qlora_without_cuda_fails_before_loading(job, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    job.configure({**FAST, "method": "qlora"}, train=sft_rows())
    assert job.run() == 1
    assert "method=qlora needs an NVIDIA GPU" in job.failure


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("no-train", "the train channel is missing or empty"),
        ("two-files", "must hold exactly one .jsonl file, found 2"),
        ("eval-format", "the eval channel is text but the train channel is chat"),
        ("one-row", "at least 2 are needed"),
        ("deepspeed", "distribution=deepspeed needs DeepSpeed"),
    ],
)
def test_impossible_jobs_fail_with_a_reason(job, setup, expected):
    hyper = {**FAST, "distribution": "deepspeed"} if setup == "deepspeed" else FAST
    rows = None if setup == "no-train" else sft_rows()[:1] if setup == "one-row" else sft_rows()
    channels = {"eval": [{"text": "plain"}]} if setup == "eval-format" else {}
    job.configure(hyper, train=rows, **channels)
    if setup == "two-files":
        shutil.copy(job.root / "input/data/train/train.jsonl", job.root / "input/data/train/more.jsonl")
    assert job.run() == 1
    assert expected in job.failure


def test_usage_error():
    from tuneyard_trainer.__main__ import main

    assert main([]) == 2 and main(["fit"]) == 2


def test_s3_base_model_without_the_model_channel_fails_before_loading(job):
    """Our plans pass the base model's S3 prefix as base_model and as the model channel; the URI is never
    something from_pretrained could download."""
    from tuneyard_trainer.sagemaker_env import SageMakerEnv
    from tuneyard_trainer.train import read_inputs

    uri = "s3://tuneyard-data/base-models/llama-3.1-8b/"
    job.configure({**FAST, "base_model": uri}, train=sft_rows())
    assert read_inputs(SageMakerEnv(job.root)).model_source == str(job.root / "input" / "data" / "model")
    (job.root / "input" / "data" / "model").unlink()
    assert job.run() == 1
    assert f"PreflightError: base_model is {uri}, but the model channel is missing or empty" in job.failure


def test_a_worker_dying_without_a_reason_still_leaves_one(job, monkeypatch):
    """torchrun returns 1 when a worker is killed (out of memory): output/failure must still say something."""
    from tuneyard_trainer import train

    monkeypatch.setattr(train, "run", lambda env: 1)
    job.configure(FAST, train=sft_rows())
    assert job.run() == 1
    assert job.failure.startswith("train failed: the training processes exited with code 1 without a reason")
