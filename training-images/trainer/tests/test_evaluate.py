"""`evaluate`: eval.json for the pipeline's gate, from a real training output (the shared LoRA run)."""

import json
import math
import os

import pytest
import torch
from conftest import FAST, REPO_ROOT, Job, probe_rows, sft_rows
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneyard_trainer import train
from tuneyard_trainer.data import render_sft
from tuneyard_trainer.evaluate import mean_loss
from tuneyard_trainer.sagemaker_env import SageMakerEnv

KEYS = {"schema_version", "base", "tuned", "eval_loss_ratio", "forgetting_increase", "examples"}

# The real reports this trainer writes, committed for the pipeline's ReadEvalReport tests (the TypeScript side
# of the eval.json contract reads them instead of a hand-written copy). TUNEYARD_UPDATE_FIXTURES=1 rewrites them.
FIXTURES = REPO_ROOT / "test" / "fixtures" / "contracts"


def shape(value):
    """The key tree and JSON types of a report, without its numbers."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def check_fixture(name: str, report: dict) -> None:
    path = FIXTURES / name
    if os.environ.get("TUNEYARD_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert shape(committed) == shape(report), f"{path} no longer has the shape evaluate writes: rerun with TUNEYARD_UPDATE_FIXTURES=1"


def evaluation(make_job, lora_run, **channels):
    job = make_job("evaluate").configure({}, **channels)
    (job.root / "input" / "data" / "adapter").symlink_to(lora_run.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())
    assert (job.root / "output" / "data" / "eval.json").read_text() == (job.model_dir / "eval.json").read_text()
    return report


def test_eval_report_compares_base_and_tuned_with_the_probe(make_job, lora_run):
    report = evaluation(make_job, lora_run, eval=sft_rows()[:8], probe=probe_rows())
    assert set(report) == KEYS
    assert report["schema_version"] == 1 and report["examples"] == 8
    for side in ("base", "tuned"):
        figures = report[side]
        assert set(figures) == {"eval_loss", "eval_perplexity", "probe_loss"}
        assert figures["eval_perplexity"] == pytest.approx(math.exp(figures["eval_loss"]))
        assert figures["probe_loss"] > 0
    assert report["tuned"]["eval_loss"] < report["base"]["eval_loss"] - 0.1  # the rows it was trained on
    assert report["eval_loss_ratio"] == pytest.approx(report["tuned"]["eval_loss"] / report["base"]["eval_loss"])
    assert report["forgetting_increase"] == pytest.approx(report["tuned"]["probe_loss"] - report["base"]["probe_loss"])
    assert report["forgetting_increase"] != 0
    check_fixture("eval-report-probe.json", report)


def test_without_a_probe_the_forgetting_figures_are_null(make_job, lora_run):
    report = evaluation(make_job, lora_run, eval=sft_rows()[:4])
    assert report["base"]["probe_loss"] is None and report["tuned"]["probe_loss"] is None
    assert report["forgetting_increase"] is None and report["examples"] == 4
    check_fixture("eval-report.json", report)


def test_evaluate_without_channels_fails_with_a_reason(job):
    job.configure({})
    assert job.run("evaluate") == 1
    assert "evaluate needs the model (base weights) and adapter (training output) channels" in job.failure


def test_a_training_output_is_read_as_a_folder_and_a_lone_tarball_is_extracted(tmp_path, lora_run):
    """The adapter channel is the training job's model/ output, adapter.tar.gz included: it is read as the folder
    (so training_config.json is found); a channel that is only a compressed model.tar.gz is extracted."""
    env = SageMakerEnv(tmp_path)
    channel = tmp_path / "input" / "data" / "adapter"
    channel.parent.mkdir(parents=True)
    channel.symlink_to(lora_run.model_dir, target_is_directory=True)
    assert (channel / "adapter.tar.gz").exists()
    assert env.channel_model("adapter", tmp_path / "scratch") == channel

    compressed = tmp_path / "input" / "data" / "model"
    compressed.mkdir()
    (compressed / "model.tar.gz").write_bytes((lora_run.model_dir / "adapter.tar.gz").read_bytes())
    extracted = env.channel_model("model", tmp_path / "scratch")
    assert extracted == tmp_path / "scratch" / "model" and (extracted / "adapter_config.json").exists()


LONG_AND_SHORT = sft_rows()[:7] + [
    {
        "messages": [
            {"role": "user", "content": f"Describe the {en}."},
            {"role": "assistant", "content": f"The {en} and the {fr} are near the road. " * 4},
        ]
    }
    for en, fr in (("cat", "dog"), ("sun", "moon"))
]


def hand_token_mean(model, tokenizer, rows: list[dict]) -> float:
    """NLL of every response token (the assistant message and its end-of-turn token after the prompt), summed over
    the rows one at a time, divided by their count."""
    total, count = 0.0, 0
    for row in rows:
        prompt, reply = row["messages"][:-1], row["messages"]
        prefix = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids = tokenizer.apply_chat_template(reply, tokenize=True, return_dict=True)["input_ids"]
        start = len(prefix["input_ids"])
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        total -= sum(float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids)))
        count += len(ids) - start
    return total / count


def test_eval_loss_is_the_mean_over_label_tokens_whatever_the_batch_size(tmp_path, base_model_dir):
    """Responses of a few tokens and of dozens: a mean of batch means weighs every batch the same, so it changes with
    the batch size (the issue measured 5.803 at batch 4 against a token mean of 5.974)."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    rows = render_sft(LONG_AND_SHORT, "chat")
    expected = hand_token_mean(model, tokenizer, rows)
    figures = {size: mean_loss(model, tokenizer, rows, True, 256, tmp_path, batch_size=size) for size in (1, 2, 4, 9)}
    print(f"token mean by hand {expected:.6f}; eval_loss by eval batch size {figures}")
    assert figures == pytest.approx({size: expected for size in figures}, rel=1e-5)

    # the evaluations during training (early stopping, the best checkpoint, metric lines) take the same figure
    job = Job(tmp_path / "ml", base_model_dir).configure(
        {**FAST, "method": "sft", "max_length": 256}, train=sft_rows(), eval=LONG_AND_SHORT
    )
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    trainer = train.build_trainer(inputs, env, train.load_tokenizer(inputs.model_source, inputs.train.format), [])
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-5)
