"""The image definition: hadolint finds nothing, and it starts the trainer with train/evaluate."""

import subprocess
import sys
from pathlib import Path

from conftest import TRAINER_DIR

HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_reports_nothing():
    result = subprocess.run([str(HADOLINT), str(TRAINER_DIR / "Dockerfile")], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_entrypoint_runs_the_package_and_everything_it_needs_is_copied():
    text = (TRAINER_DIR / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert 'ENTRYPOINT ["python", "-m", "tuneyard_trainer"]' in lines
    assert "FROM pytorch/pytorch:2.15.0-cuda13.2-cudnn9-runtime" in lines
    for source in ("requirements.txt", "configs/", "tuneyard_trainer/", "metrics.json config.schema.json"):
        assert any(line.startswith("COPY " + source) for line in lines), source
    pins = (TRAINER_DIR / "requirements.txt").read_text().split()
    assert pins and all("==" in pin for pin in pins)
