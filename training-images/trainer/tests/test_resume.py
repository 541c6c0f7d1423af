"""Spot interruptions: SIGTERM saves a checkpoint and exits with code 75; the next run resumes from it and ends
where an uninterrupted run ends."""

import signal

import torch
from conftest import LORA_RUN, sft_rows
from safetensors.torch import load_file

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
    assert 3 <= stopped_at < TOTAL_STEPS and stopped_at % 10 != 0  # saved because of the signal, not the schedule
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
