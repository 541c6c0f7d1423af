"""`train` with method=grpo: online RL (TRL's GRPOTrainer) with a LoRA adapter on prompt-only rows, rewarded by the
evaluation's graders (the same definitions: what gates a model can also train it), a registered reward model, or a
weighted mix of them.

Prompt-only rows (the train channel's one JSONL file), one of:
    {"messages": [..., {"role": "user", "content": "..."}]}   a chat whose last message is the user's turn
    {"prompt": "..."}                                          a prompt, asked as one user turn
    {"prompt": [..., {"role": "user", ...}]}                   a chat prompt
Any other field of a row (e.g. `reference`) is kept: it is the grader's `item` ({{ item.reference }}).

The reward of a completion is sum_i weight_i x reward_i over the sources (TRL's reward_weights): one per grader
(`grader_<name>`: Grader.grade({"output_text": completion}, row)), the reward model (`model`: its score of the prompt
and completion rendered with the chat template) and, with grpo_length_guard=penalty, `length_penalty` (-1 for a
completion clipped at grpo_max_completion_length, weighted by grpo_length_penalty). A completion that misses
grpo_format_regex gets 0 from the graders and the reward model.

The reference of the KL penalty (grpo_beta > 0) is the base model itself: TRL computes its log-probabilities with the
adapter disabled (GRPOTrainer keeps ref_model None for a PEFT model), so no second copy of the weights is held.
Generation is transformers' (use_vllm=False): no vLLM release fits the image's pins (README, "without vLLM").
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from . import graders as graders_module
from . import launch, templates
from .chat import end_of_turn_token, stop_token_ids
from .config import ConfigError, TrainerConfig, from_hyperparameters
from .data import jsonl_lines
from .metrics import MetricsCallback, format_line, gpu_memory_peak_gib
from .report import HISTORY_FILE
from .sagemaker_env import ChannelError, SageMakerEnv, write_adapter_archive

REWARD_MODEL_CHANNEL = "reward_model"
REWARD_MODEL_SOURCE = "reward_model"  # its name in reward_weights
ROW_COLUMN = "tuneyard_row"  # the index of a dataset row, so the graders read the row as written


class GrpoPreflightError(ValueError):
    """A GRPO job that cannot run with this config, data or reward model; found before any weights load."""


# ---------------------------------------------------------------------------------------------------------------------
# Prompt-only rows
# ---------------------------------------------------------------------------------------------------------------------


def _messages_problem(messages: Any, where: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{where} must be a non-empty list of messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(
            message.get("content"), str
        ):
            return f"{where}[{i}] must be an object with a string role and a string content"
    if messages[-1]["role"] != "user":
        return (
            f"{where} must end with a user message (the turn the model answers), not {messages[-1]['role']}; drop the "
            "answer: GRPO samples its own"
        )
    return None


def read_prompt_rows(path: Path, method: str = "grpo") -> list[dict[str, Any]]:
    """The rows of a prompt-only JSONL file; PreflightError listing every bad line (its number and the fix)."""
    rows, problems = [], []
    for number, line in jsonl_lines(path):  # the lines the plane validated, numbered alike
        if isinstance(line, UnicodeDecodeError):
            problems.append(f"line {number}: not valid UTF-8 at byte {line.start}")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {number}: not JSON ({err.msg} at character {err.pos})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {number}: must be a JSON object")
            continue
        if "messages" in row:
            problem = _messages_problem(row["messages"], "messages")
        elif isinstance(row.get("prompt"), str):
            problem = None if row["prompt"].strip() else "prompt is empty"
        elif "prompt" in row:
            problem = _messages_problem(row["prompt"], "prompt")
        else:
            problem = 'has neither "messages" (a chat ending with a user turn) nor "prompt"; GRPO trains on prompts only'
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            rows.append(row)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise GrpoPreflightError(
            f"channel train: {len(problems)} invalid row(s) in {path.name} for method={method}, which trains on prompt-only "
            f"rows ({{\"messages\": [... user turn]}} or {{\"prompt\": ...}}); fix them:\n{shown}{more}"
        )
    if not rows:
        raise GrpoPreflightError(f"channel train: {path.name} holds no rows")
    return rows


def prompt_of(row: dict[str, Any], chat: bool) -> str | list[dict[str, str]]:
    """TRL's prompt: a conversation (rendered with the chat template) or, without a template, the plain string."""
    if "messages" in row:
        messages = row["messages"]
    elif isinstance(row["prompt"], list):
        messages = row["prompt"]
    else:
        return [{"role": "user", "content": row["prompt"]}] if chat else row["prompt"]
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def prompt_tokens(tokenizer, prompt: str | list[dict[str, str]]) -> int:
    """Tokens of the prompt as the policy sees it (with the generation prompt of the chat template)."""
    if isinstance(prompt, list):
        return len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    return len(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def fit_prompts(rows: list[dict[str, Any]], tokenizer, budget: int) -> tuple[list[dict[str, Any]], int]:
    """The rows whose prompt leaves room for a whole completion within max_length (`budget` = max_length -
    grpo_max_completion_length tokens), and how many were dropped (a cut prompt would lose its question)."""
    chat = bool(tokenizer.chat_template)
    kept = [row for row in rows if prompt_tokens(tokenizer, prompt_of(row, chat)) <= budget]
    return kept, len(rows) - len(kept)


def prompts_within(
    rows: list[dict[str, Any]], tokenizer, max_length: int, completion_length: int, completion_key: str, error: type
) -> tuple[list[dict[str, Any]], int]:
    """The prompt rows with room for a whole completion of `completion_length` tokens within `max_length`, and how many
    were dropped; refused (`error`) when max_length leaves no room for a prompt or no prompt fits."""
    budget = max_length - completion_length
    if budget < 1:
        raise error(
            f"max_length ({max_length}) leaves no room for a prompt beside {completion_key} ({completion_length}); "
            f"raise max_length or lower {completion_key}"
        )
    kept, overlong = fit_prompts(rows, tokenizer, budget)
    if not kept:
        raise error(
            f"every prompt of the train channel is longer than max_length - {completion_key} = {budget} "
            "tokens; raise max_length or shorten the prompts"
        )
    return kept, overlong


def require_reward_model_folder(env: SageMakerEnv, reward_model: str, error: type) -> Path:
    """The reward model's files from the job's reward_model channel; refused (`error`) when the channel is missing."""
    folder = reward_model_folder(env)
    if folder is None:
        raise error(
            f"reward_model is {reward_model}, but the job has no reward_model channel: pass the registered "
            "reward model's artifact as the `reward_model` channel"
        )
    return folder


def policy_tokenizer(source: str, chat_template: str | None, method: str, error: type):
    """The policy's tokenizer, with a chat template (the tokenizer's, or chat_template applied): plain prompts are asked
    as a user turn. The evaluation job answers the eval prompts with the chat template and the gate's reward gain
    scores those answers, so a policy without one would train on bare prompts and then fail its evaluation."""
    from .train import load_tokenizer

    tokenizer = load_tokenizer(source, "chat" if chat_template else "text", chat_template)
    if not tokenizer.chat_template:
        raise error(
            f"the tokenizer of {source} has no chat template, and the evaluation job answers the eval prompts with it "
            f"(the gate of a {method} run scores those answers with its reward); set chat_template (recipe "
            "chatTemplate) to chatml, or use a base model that ships one (most instruct models do)"
        )
    return tokenizer


def prompt_dataset(rows: list[dict[str, Any]], chat: bool) -> Dataset:
    return Dataset.from_list([{"prompt": prompt_of(row, chat), ROW_COLUMN: i} for i, row in enumerate(rows)])


def grader_item(row: dict[str, Any]) -> dict[str, Any]:
    """The grader's `item`: the row as written, with `prompt` when it had messages (templates may read either)."""
    return row if "prompt" in row or "messages" not in row else {**row, "prompt": row["messages"]}


# ---------------------------------------------------------------------------------------------------------------------
# Reward sources
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Guards:
    """The length and format guards, and what they saw since the last metric line."""

    max_completion_length: int
    stop_ids: set[int]
    format_regex: re.Pattern[str] | None
    format_checked: int = 0
    format_missed: int = 0
    grade_errors: list[str] = field(default_factory=list)

    def clipped(self, completion_ids: list[int]) -> bool:
        """Ran to max_completion_length without ending on a stop token."""
        return len(completion_ids) >= self.max_completion_length and (
            not completion_ids or completion_ids[-1] not in self.stop_ids
        )

    def format_ok(self, texts: list[str]) -> list[bool]:
        if self.format_regex is None:
            return [True] * len(texts)
        passed = [self.format_regex.fullmatch(t) is not None for t in texts]
        self.format_checked += len(passed)
        self.format_missed += passed.count(False)
        return passed

    def take_format_miss_ratio(self) -> float | None:
        if not self.format_checked:
            return None
        ratio = self.format_missed / self.format_checked
        self.format_checked = self.format_missed = 0
        return ratio


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class GraderReward:
    """One grader as a TRL reward function: grade({"output_text": completion}, row). A row the grader cannot grade
    scores None (TRL leaves it out of that source's mean and the sum)."""

    def __init__(self, grader: graders_module.Grader, rows: list[dict[str, Any]], guards: Guards):
        self.grader, self.rows, self.guards = grader, rows, guards
        self.source = grader.name  # its name in reward_weights
        self.__name__ = f"grader_{_safe_name(grader.name)}"

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        passed = self.guards.format_ok(texts)
        scores: list[float | None] = []
        for text, ok, index in zip(texts, passed, kwargs[ROW_COLUMN], strict=True):
            if not ok:
                scores.append(0.0)
                continue
            try:
                scores.append(float(self.grader.grade({"output_text": text}, grader_item(self.rows[index]))))
            except graders_module.GradeError as err:
                if len(self.guards.grade_errors) < 20:
                    self.guards.grade_errors.append(f"{self.grader.name}, row {index}: {err}")
                scores.append(None)
        return scores


class ModelReward:
    """The reward model's score (its one logit) of the prompt and completion, rendered as the policy sees them."""

    __name__ = "model"
    source = REWARD_MODEL_SOURCE  # its name in reward_weights

    def __init__(self, folder: Path, tokenizer, guards: Guards, dtype: torch.dtype):
        self.tokenizer, self.guards = tokenizer, guards
        self.model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=dtype)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = tokenizer.pad_token_id
        self.model.eval().requires_grad_(False)

    def text(self, prompt: Any, completion: Any) -> str:
        if isinstance(prompt, list):
            messages = prompt + [{"role": "assistant", "content": completion_text(completion)}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return prompt + completion_text(completion)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        passed = self.guards.format_ok([completion_text(c) for c in completions])
        texts = [self.text(p, c) for p, c in zip(prompts, completions, strict=True)]
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        self.model.to(device)
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
        ).to(device)
        with torch.inference_mode():
            scores = self.model(**batch).logits[:, 0].float().tolist()
        return [s if ok else 0.0 for s, ok in zip(scores, passed, strict=True)]


def source_rewards(
    graders: list[graders_module.Grader],
    rows: list[dict[str, Any]],
    reward_model_dir: Path | None,
    weights: dict[str, float],
    tokenizer,
    guards: Guards,
    dtype: torch.dtype,
) -> tuple[list[Any], list[float]]:
    """The reward functions of a run's sources and their weights, in the order of `weights` (the graders, then the
    reward model): what the training job's reward sums (with the length penalty beside them) and what the evaluation
    job scores the base and tuned answers with (`weighted_rewards`). `rows` are the rows the graders read as `item`,
    by the ROW_COLUMN index."""
    functions: list[Any] = [GraderReward(g, rows, guards) for g in graders]
    if reward_model_dir is not None:
        functions.append(ModelReward(reward_model_dir, tokenizer, guards, dtype))
    return functions, [weights[f.source] for f in functions]


def weighted_rewards(
    functions: list[Any], weights: list[float], prompts: list[Any], completions: list[Any], batch_size: int = 16
) -> tuple[dict[str, list[float | None]], list[float]]:
    """Each source's reward of each completion (a row its grader could not grade: None) and each completion's reward,
    sum_i weight_i x reward_i with the None left out (TRL's nansum), as GRPOTrainer and RLOOTrainer add them up.
    Completions are scored `batch_size` at a time (the reward model's forward pass); row i is ROW_COLUMN i."""
    by_source: dict[str, list[float | None]] = {f.source: [] for f in functions}
    for start in range(0, len(prompts), batch_size):
        end = min(start + batch_size, len(prompts))
        for function in functions:
            by_source[function.source] += function(
                prompts[start:end], completions[start:end], **{ROW_COLUMN: list(range(start, end))}
            )
    totals = [
        sum(weight * by_source[f.source][i] for f, weight in zip(functions, weights, strict=True)
            if by_source[f.source][i] is not None)
        for i in range(len(prompts))
    ]
    return by_source, totals


class LengthPenalty:
    """-1 for a clipped completion (weighted by grpo_length_penalty), 0 otherwise."""

    __name__ = "length_penalty"

    def __init__(self, guards: Guards):
        self.guards = guards

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        return [-1.0 if self.guards.clipped(list(ids)) else 0.0 for ids in completion_ids]


# ---------------------------------------------------------------------------------------------------------------------
# Preflight: config, data, graders and the reward model, before any weights load
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class GrpoInputs:
    config: TrainerConfig
    model_source: str
    train_path: Path
    rows: list[dict[str, Any]]
    graders: list[graders_module.Grader]
    reward_model_dir: Path | None
    weights: dict[str, float]  # source -> weight, in the order of the reward functions (graders, then reward_model)
    overlong_rows: int = 0  # prompts dropped: no room for a whole completion within max_length


def parse_weights(raw: str | None, sources: list[str]) -> dict[str, float]:
    if raw is None:
        return {source: 1.0 for source in sources}
    try:
        value = json.loads(raw)
        if isinstance(value, str):
            value = json.loads(value)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"reward_weights is not JSON ({err.msg} at character {err.pos}); pass an object of source -> weight, "
            'e.g. {"exact": 1, "reward_model": 0.5}'
        ) from None
    if not isinstance(value, dict):
        raise ConfigError('reward_weights must be a JSON object of source -> weight, e.g. {"exact": 1}')
    problems = []
    for name, weight in value.items():
        if name not in sources:
            near = graders_module.closest(name, sources)
            hint = f'did you mean "{near}"? ' if near else ""
            problems.append(
                f'reward_weights names "{name}", which is not a reward source of this run; {hint}the sources are '
                f"{', '.join(sources)} (the graders' names, and reward_model when a reward model is set)"
            )
        elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            problems.append(f'reward_weights["{name}"] must be a finite number (got {json.dumps(weight)})')
    if problems:
        raise ConfigError("; ".join(problems))
    return {source: float(value.get(source, 1.0)) for source in sources}


def reward_model_folder(env: SageMakerEnv) -> Path | None:
    """The reward_model channel's model folder: the channel itself, or the `full/` folder a reward job writes."""
    folder = env.channel_model(REWARD_MODEL_CHANNEL, env.root / "scratch")
    if folder is None:
        return None
    for candidate in (folder, folder / "full", folder / "model" / "full"):
        if (candidate / "config.json").is_file():
            return candidate
    raise GrpoPreflightError(
        f"the reward_model channel ({folder}) holds no model: expected a config.json there or in full/ (a reward "
        "job's model/full); pass the registered reward model's artifact"
    )


def check_reward_model(folder: Path, policy_tokenizer, policy_source: str) -> None:
    """Its config (one score) and tokenizer (the policy's vocabulary), read without its weights."""
    config = AutoConfig.from_pretrained(str(folder))
    architectures = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise GrpoPreflightError(
            f"the reward model in {folder} is a {', '.join(architectures) or 'model without an architecture'}, not a "
            "sequence-classification model; name a reward model trained with method=reward"
        )
    if getattr(config, "num_labels", 1) != 1:
        raise GrpoPreflightError(
            f"the reward model in {folder} has {config.num_labels} labels; a reward model has one score (num_labels=1)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise GrpoPreflightError(
            f"the reward model in {folder} has no tokenizer ({err}); a reward model is saved with its tokenizer"
        ) from None
    ours, theirs = policy_tokenizer.get_vocab(), tokenizer.get_vocab()
    if ours != theirs:
        differing = len(set(ours.items()) ^ set(theirs.items()))
        raise GrpoPreflightError(
            f"the reward model's vocabulary ({len(theirs)} tokens) is not the policy's ({policy_source}: {len(ours)} "
            f"tokens; {differing} token ids differ): it would score token ids it reads differently. Use a reward "
            "model trained (method=reward) on this base model or one of its tokenizer family"
        )


def read_inputs(env: SageMakerEnv) -> tuple[GrpoInputs, Any]:
    """Everything that can fail before weights load; returns the inputs and the policy's tokenizer."""
    config = from_hyperparameters(env.read_hyperparameters())
    if config.method != "grpo":
        raise ConfigError(f"grpo.read_inputs got method={config.method}")
    if config.method == "grpo" and config.optim in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit") and not (
        torch.cuda.is_available()
    ):
        raise GrpoPreflightError(f"optim={config.optim} needs an NVIDIA GPU (bitsandbytes); use adamw_torch_fused")
    train_path = env.channel_jsonl("train")
    if train_path is None:
        raise ChannelError("the train channel is missing or empty; it must hold one JSONL file of prompt-only rows")
    rows = read_prompt_rows(train_path)
    from .evaluate import run_graders

    # the graders channel (graders.json, as PlanRun passes the eval job's) or the graders hyperparameter
    grader_list = run_graders(env, {"graders": config.graders} if config.graders is not None else {})
    judges = [g.name for g in grader_list if isinstance(g, graders_module.ModelGrader)]
    if judges:
        raise GrpoPreflightError(
            f"graders {', '.join(judges)} are LLM judges (score_model, label_model), which do not run in the training "
            "job yet; reward with the other grader types or a reward model"
        )
    if not grader_list and config.reward_model is None:
        raise GrpoPreflightError(
            "method=grpo needs a reward source: graders (the graders channel, graders.json, or the graders "
            "hyperparameter: a JSON list of grader definitions), reward_model (a registered reward model, its files in "
            "the reward_model channel) or both"
        )
    model_dir = env.channel("model")
    source = str(model_dir) if model_dir else config.base_model
    # a chat template (the tokenizer's, or chat_template) renders every prompt: a plain prompt is asked as a user turn
    tokenizer = policy_tokenizer(source, config.chat_template, "grpo", GrpoPreflightError)
    reward_dir = None
    if config.reward_model is not None:
        reward_dir = require_reward_model_folder(env, config.reward_model, GrpoPreflightError)
        check_reward_model(reward_dir, tokenizer, source)
    sources = [g.name for g in grader_list] + ([REWARD_MODEL_SOURCE] if reward_dir else [])
    weights = parse_weights(config.reward_weights, sources)
    kept, overlong = prompts_within(
        rows, tokenizer, config.max_length, config.grpo_max_completion_length, "grpo_max_completion_length",
        GrpoPreflightError,
    )
    inputs = GrpoInputs(config, source, train_path, kept, grader_list, reward_dir, weights, overlong)
    return inputs, tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# Metric lines
# ---------------------------------------------------------------------------------------------------------------------

# TRL log key -> metric name (metrics.METRICS describes them)
_FROM_LOGS = {
    "loss": "train_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
}


class GrpoMetricsCallback(MetricsCallback):
    """A metric line per logging step: loss, mean reward (total, and `reward_<source>` per reward function, before
    weighting), KL to the reference, completion length, clipped ratio and, with a format guard, its miss ratio."""

    def __init__(self, guards: Guards):
        super().__init__()
        self.guards = guards

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        values = {name: float(logs[key]) for key, name in _FROM_LOGS.items() if logs.get(key) is not None}
        for key, value in logs.items():
            match = re.fullmatch(r"rewards/(.+)/mean", key)
            if match and value is not None:
                values[f"reward_{match.group(1)}"] = float(value)
        miss = self.guards.take_format_miss_ratio()
        if miss is not None:
            values["format_miss_ratio"] = miss
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen - self._last_tokens
        values["tokens_per_second"] = tokens / max(now - self._last_time, 1e-9)
        values["gpu_memory_peak_gib"] = gpu_memory_peak_gib()
        self._last_time, self._last_tokens = now, state.num_input_tokens_seen
        print(format_line(state.global_step, values), flush=True, file=sys.stdout)


# ---------------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------------


def grpo_args(config: TrainerConfig, env: SageMakerEnv, weights: list[float]) -> GRPOConfig:
    from .train import _trainer_args

    args = _trainer_args(config, env)
    for key in ("eval_strategy", "eval_steps", "load_best_model_at_end", "metric_for_best_model", "max_length",
                "per_device_eval_batch_size", "include_num_input_tokens_seen"):
        args.pop(key, None)
    return GRPOConfig(
        **args,
        eval_strategy="no",  # the evaluation job evaluates (graders, benchmarks, the gate)
        include_num_input_tokens_seen="no",  # TRL counts prompt and completion tokens itself (num_tokens)
        num_generations=config.grpo_num_generations,
        max_completion_length=config.grpo_max_completion_length,
        temperature=config.grpo_temperature,
        beta=config.grpo_beta,
        reward_weights=weights,
        mask_truncated_completions=config.grpo_length_guard == "mask",
        use_vllm=False,  # no vLLM release fits torch 2.15 + TRL 1.16 (README: "without vLLM")
        log_completions=False,
        remove_unused_columns=False,
    )


def load_policy(config: TrainerConfig, source: str, tokenizer) -> tuple[torch.nn.Module, Any]:
    """The policy of an online RL run (grpo, rloo): the base with its embeddings fitted to the tokenizer, generation
    stopping on the chat template's end of turn as well as eos; and the template's new token rows the adapter trains."""
    from .train import load_model

    model = load_model(config, source)
    templates.fit_embeddings(model, tokenizer)
    new_tokens = templates.trainable_token_indices(model, templates.template_token_ids(tokenizer), config.modules_to_save)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    return model, new_tokens


def build_trainer(inputs: GrpoInputs, env: SageMakerEnv, tokenizer, callbacks: list) -> tuple[GRPOTrainer, Guards]:
    from .train import compute_dtype, fp32_trainable_parameters, lora_config

    config = inputs.config
    chat = bool(tokenizer.chat_template)
    guards = Guards(
        config.grpo_max_completion_length,
        set(stop_token_ids(tokenizer)),  # the end of turn and eos
        re.compile(config.grpo_format_regex, re.DOTALL) if config.grpo_format_regex else None,
    )
    functions, weights = source_rewards(
        inputs.graders, inputs.rows, inputs.reward_model_dir, inputs.weights, tokenizer, guards, compute_dtype()
    )
    if config.grpo_length_guard == "penalty":
        functions.append(LengthPenalty(guards))
        weights.append(config.grpo_length_penalty)
    args = grpo_args(config, env, weights)
    model, new_tokens = load_policy(config, inputs.model_source, tokenizer)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=prompt_dataset(inputs.rows, chat),
        processing_class=tokenizer,
        peft_config=lora_config(config, new_tokens),
        callbacks=[GrpoMetricsCallback(guards), *callbacks],
    )
    if config.distribution in ("none", "ddp"):
        fp32_trainable_parameters(trainer.model)
    return trainer, guards


def run(env: SageMakerEnv) -> int:
    """Trains; writes model/adapter, training_config.json and the log history."""
    inputs, tokenizer = read_inputs(env)
    built: dict[str, Any] = {}

    def build(callbacks: list) -> Any:
        built["trainer"], built["guards"] = build_trainer(inputs, env, tokenizer, callbacks)
        return built["trainer"]

    return run_online(
        env, inputs, tokenizer, build, lambda: {"sources": inputs.weights, "grade_errors": built["guards"].grade_errors}
    )


def run_online(env: SageMakerEnv, inputs: Any, tokenizer: Any, build: Any, rewards: Any) -> int:
    """The run of an online RL method (grpo, rloo) once its inputs are read: torchrun's layout, the checkpoint identity
    (another run's checkpoint fails the job before any weights load) and resume, the stop signal, then the adapter and
    its archive, training_config.json (`rewards()` says what rewarded it) and the log history. `build(callbacks)`
    returns the method's trainer."""
    from .train import (
        _RESUMABLE_CHANGES, ADAPTER_ARCHIVE, TRAINING_CONFIG, CheckpointManifest, StopOnSignal, _is_main_process,
        _sha256, launch_torchrun, resume_point, train_resumably,
    )
    from .sagemaker_env import STOP_EXIT_CODE

    config = inputs.config
    launched = launch_torchrun(config, env)
    if launched is not None:
        return launched
    identity = {
        "config": {k: v for k, v in config.model_dump().items() if k not in _RESUMABLE_CHANGES},
        "data": {"train": _sha256(inputs.train_path), "eval": None},
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
    }
    resume_point(env.checkpoints_dir, identity)  # another run's checkpoint fails the job before any weights load
    stop = StopOnSignal(env.stop_flag)
    stop.install()
    try:
        trainer = build([stop, CheckpointManifest(identity)])
        if _is_main_process():
            print(format_line(0, {"overlong_rows": inputs.overlong_rows}), flush=True)
        if train_resumably(trainer, env, identity, stop):
            return 0 if launch.is_worker() else STOP_EXIT_CODE
        history = list(trainer.state.log_history)
        generation = trainer.model.generation_config
        generation.eos_token_id = stop_token_ids(tokenizer)
        trainer.save_model(str(env.model_dir / "adapter"))
    finally:
        stop.uninstall()
    if not _is_main_process():
        return 0
    generation.save_pretrained(str(env.model_dir / "adapter"))
    write_adapter_archive(env.model_dir / "adapter", env.model_dir / ADAPTER_ARCHIVE)
    artifacts = {"adapter": "adapter", "adapter_archive": ADAPTER_ARCHIVE}
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trained = [e for e in history if "reward" in e]
    final = {k: float(trained[-1][k]) for k in ("reward", "kl", "completions/clipped_ratio") if trained and
             trained[-1].get(k) is not None}
    document = {
        "schema_version": 1,
        "config": config.model_dump(),
        "model_source": inputs.model_source,
        "dataset": {
            "format": "prompt", "train_rows": len(inputs.rows), "eval_channel": False,
            "overlong_rows": {"train": inputs.overlong_rows},
        },
        "artifacts": artifacts,
        "end_of_turn_token": end_of_turn_token(tokenizer),
        "stop_token_ids": generation.eos_token_id,
        "rewards": rewards(),
        "final_metrics": final,
        "versions": _versions(),
    }
    (env.model_dir / TRAINING_CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (env.model_dir / HISTORY_FILE).write_text(
        json.dumps({"schema_version": 1, "log_history": history}, indent=2) + "\n", encoding="utf-8"
    )
    print(f"done: wrote {', '.join(sorted(artifacts))} to {env.model_dir}", flush=True)
    return 0


def _versions() -> dict[str, str]:
    import importlib.metadata

    return {pkg: importlib.metadata.version(pkg) for pkg in ("torch", "transformers", "trl", "peft")}
