"""`evaluate`: eval.json for the pipeline's gate, from a real training output."""

import json
import math

import pytest
from conftest import FAST, probe_rows, sft_rows

KEYS = {"schema_version", "base", "tuned", "eval_loss_ratio", "forgetting_increase", "examples"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_model_dir):
    from conftest import Job

    job = Job(tmp_path_factory.mktemp("trained") / "ml", base_model_dir)
    job.configure({**FAST, "method": "lora", "learning_rate": 2e-2, "num_train_epochs": 4}, train=sft_rows())
    assert job.run() == 0, job.failure
    return job


def evaluation(make_job, trained, **channels):
    job = make_job("evaluate").configure({}, **channels)
    (job.root / "input" / "data" / "adapter").symlink_to(trained.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())
    assert (job.root / "output" / "data" / "eval.json").read_text() == (job.model_dir / "eval.json").read_text()
    return report


def test_eval_report_compares_base_and_tuned_with_the_probe(make_job, trained):
    report = evaluation(make_job, trained, eval=sft_rows()[:8], probe=probe_rows())
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


def test_without_a_probe_the_forgetting_figures_are_null(make_job, trained):
    report = evaluation(make_job, trained, eval=sft_rows()[:4])
    assert report["base"]["probe_loss"] is None and report["tuned"]["probe_loss"] is None
    assert report["forgetting_increase"] is None and report["examples"] == 4


def test_evaluate_without_channels_fails_with_a_reason(job):
    job.configure({})
    assert job.run("evaluate") == 1
    assert "evaluate needs the model (base weights) and adapter (training output) channels" in job.failure
