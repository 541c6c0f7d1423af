"""Metric lines on stdout and the SageMaker MetricDefinitions generated from the same list
(training-images/trainer/metrics.json)."""

from __future__ import annotations

import math
import sys
import time

import torch
from transformers import TrainerCallback

PREFIX = "tuneyard-metrics:"
_FLOAT = r"([0-9.eE+-]+)"

# name -> what it is. Every line is `tuneyard-metrics: step=N name=value name=value ...`; each name is preceded
# by a space, so the regex ` name=` cannot match inside a longer name.
METRICS = {
    "train_loss": "training loss, averaged over the logging window",
    "eval_loss": "held-out loss",
    "eval_perplexity": "exp(eval_loss)",
    "learning_rate": "learning rate at the step",
    "epoch": "fractional epoch",
    "grad_norm": "gradient norm before clipping",
    "tokens_per_second": "non-padding tokens trained per second, all processes together, over the logging window",
    "gpu_memory_peak_gib": "peak GPU memory allocated by this process in GiB (0 without a GPU)",
    "reward_margin": "DPO and reward models: mean chosen minus rejected reward",
    "reward_accuracy": "DPO and reward models: share of pairs where the chosen reward is higher",
    "overlong_rows": "rows of the train split longer than max_length tokens (dropped or truncated: overlong_rows), at step 0",
    "reward_mean": (
        "GRPO and RLOO: mean reward of the step's completions (GRPO: the weighted sum of the reward sources)"
    ),
    "reward_std": "GRPO and RLOO: standard deviation of the completions' rewards",
    "reward_model": "GRPO and RLOO: mean score the reward model gave the completions (before its weight)",
    "reward_length_penalty": "GRPO: mean length penalty (-1 per clipped completion, before grpo_length_penalty)",
    "kl": "GRPO and RLOO: mean per-token KL divergence of the policy from the reference (the base, adapter disabled)",
    "completion_length": "GRPO and RLOO: mean completion length in tokens",
    "clipped_ratio": "GRPO and RLOO: share of completions that reached the max completion length without ending",
    "format_miss_ratio": "GRPO: share of completions that missed grpo_format_regex (scored 0)",
    "clip_fraction": "RLOO: share of completion tokens whose policy ratio left [1 - rloo_epsilon, 1 + rloo_epsilon]",
    "policy_loss": "RLOO: the clipped policy-gradient loss with its KL term (TRL's loss), over the logging window",
}

# Trainer log key -> metric name
_FROM_LOGS = {
    "loss": "train_loss",
    "eval_loss": "eval_loss",
    "learning_rate": "learning_rate",
    "epoch": "epoch",
    "grad_norm": "grad_norm",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    # a reward model (RewardTrainer): its pairwise figures on the step's pairs
    "margin": "reward_margin",
    "accuracy": "reward_accuracy",
}


def metric_definitions() -> list[dict[str, str]]:
    return [{"Name": name, "Regex": f" {name}={_FLOAT}"} for name in METRICS]


def format_line(step: int, values: dict[str, float]) -> str:
    return " ".join([PREFIX, f"step={step}", *(f"{k}={v:.6g}" for k, v in values.items())])


def gpu_memory_peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


class MetricsCallback(TrainerCallback):
    """Prints a metric line for every Trainer log event, on the main process only."""

    def __init__(self) -> None:
        self._last_time = time.perf_counter()
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        values = {name: float(logs[key]) for key, name in _FROM_LOGS.items() if key in logs}
        if "eval_loss" in values:
            values["eval_perplexity"] = math.exp(min(values["eval_loss"], 700.0))
        if "train_loss" in values:
            now = time.perf_counter()
            tokens = state.num_input_tokens_seen - self._last_tokens
            values["tokens_per_second"] = tokens / max(now - self._last_time, 1e-9)
            values["gpu_memory_peak_gib"] = gpu_memory_peak_gib()
            self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        if values.keys() - {"epoch"}:
            print(format_line(state.global_step, values), flush=True, file=sys.stdout)
