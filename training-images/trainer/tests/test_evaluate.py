"""`evaluate`: eval.json for the pipeline's gate, from a real training output (the shared LoRA run)."""

import json
import math
import os

import pytest
from conftest import REPO_ROOT, probe_rows, sft_rows

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
