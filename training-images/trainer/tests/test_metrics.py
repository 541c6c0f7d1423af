"""metrics.json is generated from the metric list, and every regex matches a real run's stdout."""

import json
import re

from conftest import TRAINER_DIR

from tuneyard_trainer.contracts import render
from tuneyard_trainer.metrics import METRICS


def test_committed_metric_definitions_are_current():
    committed = (TRAINER_DIR / "metrics.json").read_text()
    assert committed == render("metrics.json"), "stale: run `python -m tuneyard_trainer.contracts`"
    names = [m["Name"] for m in json.loads(committed)]
    assert names == list(METRICS)
    required = {"train_loss", "eval_loss", "eval_perplexity", "learning_rate", "epoch", "grad_norm"}
    assert required | {"tokens_per_second", "gpu_memory_peak_gib"} <= set(names)


def test_every_regex_captures_a_float_from_a_real_training_log(dpo_lora_run):
    """A DPO run (it logs every metric, the reward ones included) in its own process; stdout as SageMaker sees it."""
    _, stdout = dpo_lora_run
    lines = stdout.splitlines()
    for definition in json.loads((TRAINER_DIR / "metrics.json").read_text()):
        if METRICS[definition["Name"]].startswith(("GRPO:", "RLOO:", "GRPO and RLOO:")):
            continue  # an RL run's figures: tests/test_grpo.py and tests/test_rloo.py match them in their stdout
        regex = re.compile(definition["Regex"])
        captured = [m.group(1) for line in lines if (m := regex.search(line))]
        assert captured, f"{definition['Name']}: no line matches {definition['Regex']}"
        values = [float(c) for c in captured]
        assert all(v == v for v in values), definition["Name"]
    losses = [float(m.group(1)) for line in lines if (m := re.search(r" train_loss=([0-9.eE+-]+)", line))]
    assert len(losses) == 15  # logging_steps=1, 15 optimiser steps (3 epochs of 5)
    # a name never matches inside a longer one: eval_loss lines are not train_loss lines
    assert not any(" train_loss=" in line and " eval_loss=" in line for line in lines)
