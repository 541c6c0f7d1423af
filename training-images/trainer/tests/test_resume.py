"""Spot interruptions: SIGTERM saves a checkpoint and exits with code 75; the next run resumes from it and ends
where an uninterrupted run ends. A checkpoint another run wrote (other config, other data) is refused."""

import json
import signal

import pytest
import torch
from conftest import LORA_RUN, sft_rows
from safetensors.torch import load_file

from tuneyard_trainer import train
from tuneyard_trainer.sagemaker_env import STOP_EXIT_CODE
from tuneyard_trainer.train import newest_checkpoint

TOTAL_STEPS = 20  # 19 training rows (one held out), batch 4: 5 steps per epoch, 4 epochs


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(make_job, lora_run, capsys):
    reference = lora_run  # the same hyperparameters, never interrupted
    assert newest_checkpoint(reference.checkpoints).name == f"checkpoint-{TOTAL_STEPS}"

    interrupted = make_job("interrupted").configure(LORA_RUN, train=sft_rows())
    process = interrupted.popen()
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("tuneyard-metrics: step=3 "):
            process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == STOP_EXIT_CODE, "".join(output[-30:])
    assert any("received SIGTERM" in line for line in output)
    checkpoint = newest_checkpoint(interrupted.checkpoints)
    stopped_at = int(checkpoint.name.split("-")[1])
    # saved because of the signal, at the step the run stopped (which may be a scheduled one, 10, when the training
    # outran the test's reading of its output)
    assert 3 <= stopped_at < TOTAL_STEPS
    assert any(line.startswith(f"stopped after step {stopped_at};") for line in output), "".join(output[-30:])
    assert "stopped by SIGTERM" in interrupted.failure and "Exit code 75" in interrupted.failure
    assert not (interrupted.model_dir / "adapter").exists()

    capsys.readouterr()
    assert interrupted.run() == 0, interrupted.failure
    assert interrupted.failure is None  # a successful run clears the previous attempt's reason
    assert f"resuming from {checkpoint}" in capsys.readouterr().out
    assert newest_checkpoint(interrupted.checkpoints).name == f"checkpoint-{TOTAL_STEPS}"

    resumed = load_file(interrupted.model_dir / "adapter" / "adapter_model.safetensors")
    expected = load_file(reference.model_dir / "adapter" / "adapter_model.safetensors")
    assert resumed.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], atol=1e-5, rtol=1e-4)


def copy_of_checkpoints(job, source):
    import shutil

    shutil.copytree(source.checkpoints, job.checkpoints)
    return job


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"hyper": {"learning_rate": 5e-3}}, "learning_rate 0.01 there, 0.005 here"),
        ({"train": sft_rows()[:-1]}, "train data sha256"),
        ({"eval": sft_rows()[:3]}, "eval data sha256"),
    ],
)
def test_a_checkpoint_of_another_config_or_dataset_is_refused_before_any_weights_load(make_job, lora_run, change,
                                                                                    reason, monkeypatch):
    """The same checkpoint location given to a job with another learning rate or other data: resuming would train
    neither run. The job fails with the differences and the fix."""
    job = make_job("foreign").configure(
        {**LORA_RUN, **change.get("hyper", {})}, train=change.get("train", sft_rows()),
        **({"eval": change["eval"]} if "eval" in change else {}),
    )
    copy_of_checkpoints(job, lora_run)
    monkeypatch.setattr(train, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    assert job.run() == 1
    assert f"checkpoint-{TOTAL_STEPS} belongs to another run (" in job.failure and reason in job.failure
    assert "give this job a checkpoint location of its own (the training job's CheckpointConfig S3Uri)" in job.failure


def test_a_checkpoint_without_a_run_identity_is_refused(make_job, lora_run):
    job = copy_of_checkpoints(make_job("anonymous").configure(LORA_RUN, train=sft_rows()), lora_run)
    manifest = job.checkpoints / f"checkpoint-{TOTAL_STEPS}" / train.CHECKPOINT_MANIFEST
    written = json.loads(manifest.read_text())
    assert written["run"]["config"]["learning_rate"] == LORA_RUN["learning_rate"] and written["run"]["processes"] == 1
    manifest.write_text(json.dumps({"files": written["files"]}))
    assert job.run() == 1
    assert "it records no run (an earlier trainer wrote it)" in job.failure


def test_logging_and_saving_may_change_on_resume(make_job, lora_run, capsys):
    job = copy_of_checkpoints(
        make_job("relogged").configure({**LORA_RUN, "logging_steps": 2, "save_steps": 20}, train=sft_rows()), lora_run
    )
    assert job.run() == 0, job.failure
    assert f"resuming from {job.checkpoints / f'checkpoint-{TOTAL_STEPS}'}" in capsys.readouterr().out
