"""`train` with method=rloo: RLHF against a registered reward model, the seeds' recipe (a reward model trained on
comparisons, then the policy optimised against it under a KL penalty to the SFT/base model), with TRL's RLOOTrainer.

Why RLOO and not PPO: TRL 1.16 (the pinned version) ships no PPO. `trl.experimental.ppo` is gone from the installed
package (`import trl.experimental.ppo` raises ModuleNotFoundError; no PPOTrainer, PPOConfig or
AutoModelForCausalLMWithValueHead anywhere under site-packages/trl): huggingface/trl#7020 removed PPO entirely (after
#4482 had moved it to trl.experimental in 1.10). RLOO (REINFORCE leave-one-out, Ahmadian et al. 2024) is TRL's stable
on-policy trainer against a reward model: the same clipped policy-gradient objective as PPO, with a KL penalty to the
reference, but the baseline of each completion is the mean reward of the other completions of its prompt instead of a
learned value model. So there is no value model to initialise and no value loss to report; the metric lines carry
the reward mean, KL, completion length, policy loss and clip fraction.

Rows, the reward model channel and its checks are grpo.py's (prompt-only rows; the `reward_model` channel, a reward
job's model/full; its vocabulary must be the policy's), read before any weights load. The KL reference is the base
model with the LoRA adapter disabled (no second copy of the weights).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from trl import RLOOConfig, RLOOTrainer

from .chat import stop_token_ids
from .config import ConfigError, TrainerConfig, from_hyperparameters
from .grpo import (
    REWARD_MODEL_CHANNEL, Guards, GrpoPreflightError, ModelReward, check_reward_model, load_policy, prompt_dataset,
    prompts_within, policy_tokenizer, read_prompt_rows, require_reward_model_folder, run_online,
)
from .metrics import MetricsCallback, format_line, gpu_memory_peak_gib
from .sagemaker_env import ChannelError, SageMakerEnv


class RlooPreflightError(GrpoPreflightError):
    """An RLOO job that cannot run with this config, data or reward model; found before any weights load."""


@dataclass
class RlooInputs:
    config: TrainerConfig
    model_source: str
    train_path: Path
    rows: list[dict[str, Any]]
    reward_model_dir: Path
    overlong_rows: int = 0


def read_inputs(env: SageMakerEnv) -> tuple[RlooInputs, Any]:
    """Everything that can fail before weights load; returns the inputs and the policy's tokenizer."""
    config = from_hyperparameters(env.read_hyperparameters())
    if config.method != "rloo":
        raise ConfigError(f"rloo.read_inputs got method={config.method}")
    if config.optim in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit") and not torch.cuda.is_available():
        raise RlooPreflightError(f"optim={config.optim} needs an NVIDIA GPU (bitsandbytes); use adamw_torch_fused")
    if config.reward_model is None:
        raise RlooPreflightError(
            "method=rloo needs reward_model: the registered reward model (method=reward) to optimise against, its files "
            f"in the job's `{REWARD_MODEL_CHANNEL}` channel"
        )
    reward_dir = require_reward_model_folder(env, config.reward_model, RlooPreflightError)
    train_path = env.channel_jsonl("train")
    if train_path is None:
        raise ChannelError("the train channel is missing or empty; it must hold one JSONL file of prompt-only rows")
    rows = read_prompt_rows(train_path, "rloo")
    model_dir = env.channel("model")
    source = str(model_dir) if model_dir else config.base_model
    tokenizer = policy_tokenizer(source, config.chat_template, "rloo", RlooPreflightError)
    check_reward_model(reward_dir, tokenizer, source)
    kept, overlong = prompts_within(
        rows, tokenizer, config.max_length, config.rloo_max_completion_length, "rloo_max_completion_length",
        RlooPreflightError,
    )
    return RlooInputs(config, source, train_path, kept, reward_dir, overlong), tokenizer


# TRL log key -> metric name (metrics.METRICS describes them)
_FROM_LOGS = {
    "loss": "policy_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "rewards/model/mean": "reward_model",
    "kl": "kl",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
    "clip_ratio/region_mean": "clip_fraction",
}


class RlooMetricsCallback(MetricsCallback):
    """A metric line per logging step: reward mean, KL, completion length, policy loss and clip fraction."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        values = {name: float(logs[key]) for key, name in _FROM_LOGS.items() if logs.get(key) is not None}
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen - self._last_tokens
        values["tokens_per_second"] = tokens / max(now - self._last_time, 1e-9)
        values["gpu_memory_peak_gib"] = gpu_memory_peak_gib()
        self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        print(format_line(state.global_step, values), flush=True, file=sys.stdout)


def rloo_args(config: TrainerConfig, env: SageMakerEnv) -> RLOOConfig:
    from .train import _trainer_args

    args = _trainer_args(config, env)
    for key in ("eval_strategy", "eval_steps", "load_best_model_at_end", "metric_for_best_model", "max_length",
                "per_device_eval_batch_size", "include_num_input_tokens_seen"):
        args.pop(key, None)
    return RLOOConfig(
        **args,
        eval_strategy="no",  # the evaluation job evaluates
        include_num_input_tokens_seen="no",
        num_generations=config.rloo_num_generations,
        max_completion_length=config.rloo_max_completion_length,
        temperature=config.rloo_temperature,
        beta=config.rloo_beta,
        epsilon=config.rloo_epsilon,
        use_vllm=False,  # no vLLM release fits torch 2.15 + TRL 1.16 (README: "without vLLM")
        log_completions=False,
        remove_unused_columns=False,
    )


def build_trainer(inputs: RlooInputs, env: SageMakerEnv, tokenizer, callbacks: list) -> RLOOTrainer:
    from .train import compute_dtype, fp32_trainable_parameters, lora_config

    config = inputs.config
    guards = Guards(config.rloo_max_completion_length, set(stop_token_ids(tokenizer)), None)
    reward = ModelReward(inputs.reward_model_dir, tokenizer, guards, compute_dtype())
    args = rloo_args(config, env)
    model, new_tokens = load_policy(config, inputs.model_source, tokenizer)
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=prompt_dataset(inputs.rows, bool(tokenizer.chat_template)),
        processing_class=tokenizer,
        peft_config=lora_config(config, new_tokens),
        callbacks=[RlooMetricsCallback(), *callbacks],
    )
    if config.distribution in ("none", "ddp"):
        fp32_trainable_parameters(trainer.model)
    return trainer


def run(env: SageMakerEnv) -> int:
    """Trains; writes model/adapter (and its archive), training_config.json and the log history (grpo.run_online)."""
    inputs, tokenizer = read_inputs(env)
    return run_online(
        env,
        inputs,
        tokenizer,
        lambda callbacks: build_trainer(inputs, env, tokenizer, callbacks),
        lambda: {"sources": {"reward_model": 1.0}, "algorithm": "rloo"},
    )
