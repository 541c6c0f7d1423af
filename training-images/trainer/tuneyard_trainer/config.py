"""The one configuration model for every training method, and its JSON schema (the cross-language contract
with the TypeScript recipe renderer: training-images/trainer/config.schema.json)."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METHODS = ("sft", "lora", "qlora", "dpo", "reward", "grpo", "rloo")
LORA_METHODS = ("lora", "qlora", "dpo", "reward", "grpo", "rloo")
# The methods that train on preference pairs and choose between an adapter and all weights (use_lora).
PREFERENCE_METHODS = ("dpo", "reward")
SFT_METHODS = ("sft", "lora", "qlora")
# The fields of the adapter: refused for method=dpo or reward with use_lora=false (all weights trained).
ADAPTER_FIELDS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora", "use_rslora", "lora_modules_to_save",
)
# The peak learning rate when a config sets none, by what is trained (dpo-lora: method=dpo with use_lora=true).
# reward-lora is TRL 1.16's RewardConfig default (1e-4); reward-full is InstructGPT's reward-model rate (9e-6), rounded.
# The one definition: the TypeScript recipe renders no learning_rate when a recipe sets none, and
# config.schema.json carries this table (x-tuneyard-default-by-method) for its docs and contract test.
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "sft": 1e-5, "dpo-lora": 5e-6, "dpo-full": 5e-7,
                          "reward-lora": 1e-4, "reward-full": 1e-5, "grpo": 1e-5, "rloo": 1e-5}
# DPO losses of TRL's DPOConfig.loss_type offered (all of TRL 1.16's but "sft", which rpo_alpha adds to one of these).
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)
# The losses TRL 1.16 reads label_smoothing in (dpo_trainer.py): robust DPO's flip probability, EXO's epsilon and
# AOT's smoothing. Every other loss ignores it, so a value set with them is refused.
LABEL_SMOOTHING_LOSS_TYPES = ("robust", "exo_pair", "aot", "aot_unpaired")
# transformers' OptimizerNames offered. The 8-bit and paged ones are bitsandbytes optimizers: they need CUDA.
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor")
CUDA_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
# Keys SageMaker adds to hyperparameters.json on its own; they are not ours to validate.
SAGEMAKER_KEY_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what is wrong and the fix."""


def _methods(*methods: str) -> dict[str, Any]:
    return {"x-tuneyard-methods": list(methods)}


class TrainerConfig(BaseModel):
    """Hyperparameters of a Tuneyard training job. SageMaker passes every value as a string; they are coerced
    to the types below. A field marked with `x-tuneyard-methods` may only be set for those methods."""

    model_config = ConfigDict(extra="forbid", title="TuneyardTrainerConfig")

    method: Literal["sft", "lora", "qlora", "dpo", "reward", "grpo", "rloo"] = Field(
        "lora",
        description="sft: all weights; lora: a LoRA adapter on a bf16 base; qlora: a LoRA adapter on a 4-bit NF4 "
        "base (needs CUDA); dpo: direct preference optimisation on prompt/chosen/rejected pairs; reward: a reward model (the base with a "
        "scalar score head, TRL's RewardTrainer) trained on the same pairs to score chosen above rejected; grpo: online RL (TRL's GRPO) with a LoRA adapter on "
        "prompt-only rows, rewarded by graders and/or a reward model; rloo: RLHF against a registered reward model (TRL's "
        "RLOOTrainer, REINFORCE leave-one-out, with a LoRA adapter and a KL penalty to the base; it stands in for PPO, "
        "which TRL 1.16 no longer ships).",
    )
    base_model: str = Field(
        min_length=1,
        description="Hugging Face Hub id of the base model. When the `model` channel is present, the weights are "
        "loaded from it instead (required for network-isolated jobs).",
    )
    use_lora: bool = Field(
        True,
        description="DPO and reward only: train a LoRA adapter (true) or all weights (false).",
        json_schema_extra=_methods(*PREFERENCE_METHODS),
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.", json_schema_extra=_methods(*LORA_METHODS))
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator.", json_schema_extra=_methods(*LORA_METHODS))
    lora_dropout: float = Field(
        0.05, ge=0, lt=1, description="Dropout on the LoRA input.", json_schema_extra=_methods(*LORA_METHODS)
    )
    lora_target_modules: str = Field(
        "all-linear",
        min_length=1,
        description='"all-linear" (every linear layer but the output head) or comma-separated module names, '
        'e.g. "q_proj,v_proj".',
        json_schema_extra=_methods(*LORA_METHODS),
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Peak learning rate. Unset: the default for what is trained, x-tuneyard-default-by-method "
        "(dpo-lora: method=dpo with use_lora=true, dpo-full: with use_lora=false; reward-lora and reward-full "
        "likewise for method=reward).",
        json_schema_extra={"x-tuneyard-default-by-method": DEFAULT_LEARNING_RATES},
    )
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = Field("cosine", description="Learning-rate schedule after warmup.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of the training steps spent warming up.")
    num_train_epochs: float = Field(1.0, gt=0, description="Passes over the training set.")
    per_device_train_batch_size: int = Field(4, ge=1, description="Sequences per GPU per step.")
    gradient_accumulation_steps: int = Field(4, ge=1, description="Steps accumulated per optimiser update.")
    max_length: int = Field(
        2048,
        ge=16,
        description="Tokens per sequence (rows longer than this: see overlong_rows); the block size when packing.",
    )
    overlong_rows: Literal["drop", "truncate"] = Field(
        "drop",
        description="Rows longer than max_length tokens (a preference pair: its prompt with the longer response). "
        "drop: left out, so every row trained on ends with its end-of-turn token, which the model must learn to "
        "stop on; truncate: cut to their first max_length tokens (the end of the response, end of turn included, is "
        "lost). Counted either way: training_config.json and the overlong_rows metric. Evaluation follows the same "
        "rule.",
    )
    packing: bool = Field(
        False,
        description="Pack sequences into max_length blocks without padding (best-fit decreasing); sequences never "
        "attend across boundaries.",
        json_schema_extra=_methods(*SFT_METHODS),
    )
    completion_only_loss: bool = Field(
        True,
        description="Train on the responses only: every assistant message of a chat, the completion, the output; "
        "false trains on every token. Either way an assistant message with weight 0 is context only. Rows in `text` "
        "format always train on every token.",
        json_schema_extra=_methods(*SFT_METHODS),
    )
    seed: int = Field(42, description="Seed for initialisation, data order and the train/eval split.")
    eval_fraction: float = Field(
        0.05, gt=0, lt=1, description="Share of the train channel held out when there is no eval channel."
    )
    eval_steps: int = Field(100, ge=1, description="Optimiser steps between evaluations.")
    save_steps: int = Field(100, ge=1, description="Optimiser steps between checkpoints (also saved on SIGTERM).")
    logging_steps: int = Field(10, ge=1, description="Optimiser steps between metric lines.")
    early_stopping_patience: int = Field(
        0, ge=0, description="Stop after this many evaluations without a lower eval_loss; 0 turns it off."
    )
    merge: bool = Field(
        False,
        description="Also write the adapter merged into a bf16 reload of the base model (model/full). Not for "
        "method=reward, which always writes its model merged (model/full), to be loaded alone as a reward model.",
        json_schema_extra=_methods("lora", "qlora", "dpo"),
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations to save GPU memory.")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto",
        description="auto: flash_attention_2 when installed and on CUDA, otherwise sdpa (on padding-free batches "
        "run sequence by sequence: sdpa_varlen).",
    )
    dpo_beta: float = Field(
        0.1, gt=0, description="DPO temperature: how far the policy may move from the reference.",
        json_schema_extra=_methods("dpo"),
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Optimiser steps to train for; set, it overrides num_train_epochs (the data is repeated as "
        "needed). Unset: num_train_epochs decides.",
    )
    weight_decay: float = Field(
        0.0, ge=0, description="Decoupled weight decay of AdamW (not applied to biases and norm weights)."
    )
    max_grad_norm: float = Field(
        1.0, ge=0, description="Gradients are clipped to this global L2 norm before each update; 0 turns clipping off."
    )
    optim: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "adamw_torch_fused",
        description="Optimiser (transformers' OptimizerNames). adamw_torch_fused: one fused kernel per step "
        "(transformers' default); adamw_torch: the unfused loop; adamw_8bit: bitsandbytes' AdamW with 8-bit state "
        "(a quarter of the optimiser memory); paged_adamw_8bit / paged_adamw_32bit: its state in CUDA unified memory, "
        "paged out to the host when GPU memory runs short (the QLoRA paper's); adafactor: factored second moments, "
        "no first moment. The bitsandbytes ones need an NVIDIA GPU.",
    )
    neftune_noise_alpha: float | None = Field(
        None,
        gt=0,
        description="NEFTune: uniform noise of scale alpha/sqrt(length x hidden size) added to the input embeddings "
        "in training (never at evaluation or inference); the paper uses 5. Unset: off.",
        json_schema_extra=_methods(*SFT_METHODS),
    )
    use_dora: bool = Field(
        False,
        description="DoRA: LoRA on the direction of each weight plus a trained magnitude vector per output row "
        "(closer to full fine-tuning at the same rank; slower steps).",
        json_schema_extra=_methods(*LORA_METHODS),
    )
    use_rslora: bool = Field(
        False,
        description="rsLoRA: scale the adapter by lora_alpha/sqrt(lora_r) instead of lora_alpha/lora_r, so high "
        "ranks keep learning.",
        json_schema_extra=_methods(*LORA_METHODS),
    )
    lora_modules_to_save: str | None = Field(
        None,
        min_length=1,
        description='Comma-separated modules trained whole beside the adapter and saved with it, e.g. "lm_head" or '
        '"embed_tokens,lm_head" (for a task head or new vocabulary). Unset: none.',
        json_schema_extra=_methods(*LORA_METHODS),
    )
    chat_template: Literal["chatml"] | None = Field(
        None,
        description="A chat template for a base model whose tokenizer has none (chat, prompt/completion, alpaca and "
        "preference rows are rendered with one). chatml: turns as <|im_start|>role ... <|im_end|>; both tokens are "
        "added to the tokenizer, the embeddings resized, and their rows trained (with an adapter: PEFT trainable "
        "tokens of the input embeddings and the output head, saved with the adapter). A tokenizer with its own "
        "template keeps it. Unset: such rows need a tokenizer that ships a template.",
    )
    dpo_loss_type: Literal[DPO_LOSS_TYPES] = Field(  # type: ignore[valid-type]
        "sigmoid",
        description="DPO loss (TRL's DPOConfig.loss_type): sigmoid (DPO), ipo, robust (label noise), hinge (SLiC), "
        "exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero (chosen answers better than the "
        "model's), apo_down (worse), discopop, sigmoid_norm (length-normalised DPO).",
        json_schema_extra=_methods("dpo"),
    )
    dpo_label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="The probability that a pair's preference is flipped (robust: 0.1 is typical; exo_pair: its "
        "epsilon, e.g. 1e-3, must be set; aot, aot_unpaired). The other losses ignore it, so it is refused with them.",
        json_schema_extra=_methods("dpo"),
    )
    rpo_alpha: float | None = Field(
        None,
        gt=0,
        description="RPO: add the NLL of the chosen responses, weighted by this (the paper uses 1), to the "
        "preference loss (TRL 1.16: loss_type [dpo_loss_type, \"sft\"], loss_weights [1, rpo_alpha]). Unset: off.",
        json_schema_extra=_methods("dpo"),
    )
    precompute_ref_log_probs: bool = Field(
        False,
        description="Compute the reference model's log-probabilities of every pair once before training, so no "
        "reference model is held (full DPO) or run (LoRA DPO: the adapter disabled) during training.",
        json_schema_extra=_methods("dpo"),
    )
    torch_compile: bool = Field(
        False,
        description="Compile the model with torch.compile (inductor): faster steps after a compile of minutes at "
        "the start; shapes that vary between batches recompile.",
    )
    use_liger_kernel: bool = Field(
        False,
        description="Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) patched into the model (TRL keeps its own fused "
        "LM head for the loss): less activation memory and faster steps on supported architectures (Llama, Mistral, "
        "Qwen, Gemma, ...). Needs an NVIDIA GPU.",
    )
    distribution: Literal["none", "ddp", "fsdp", "deepspeed"] = Field(
        "none",
        description="none: one process; ddp: one process per GPU on every host; fsdp: FSDP full sharding; "
        "deepspeed: DeepSpeed ZeRO-3.",
    )
    graders: str | None = Field(
        None,
        min_length=2,
        description="GRPO: the graders that reward each completion, as the JSON list the evaluation job takes (the same "
        "definitions, graders.schema.json): a grader's sample is {\"output_text\": completion}, its item the train row. "
        "Or the job's `graders` channel (graders.json, what PlanRun writes; not both). score_model and label_model (LLM "
        "judges) are refused: they do not run in the job yet.",
        json_schema_extra=_methods("grpo"),
    )
    reward_model: str | None = Field(
        None,
        min_length=1,
        description="GRPO and RLOO: the registered reward model (a sequence-classification model with one score, method=reward) "
        "that rewards each prompt and completion; its files arrive in the job's `reward_model` channel and its "
        "tokenizer must be the policy's.",
        json_schema_extra=_methods("grpo", "rloo"),
    )
    reward_weights: str | None = Field(
        None,
        min_length=2,
        description='GRPO: JSON object of reward source -> weight, a source being a grader\'s name or "reward_model", '
        'e.g. {"exact": 1, "reward_model": 0.5}; the reward is the weighted sum. Unset (or a source left out): 1.',
        json_schema_extra=_methods("grpo"),
    )
    grpo_num_generations: int = Field(
        8,
        ge=2,
        description="GRPO group size: completions sampled per prompt (advantages are relative to the group). "
        "per_device_train_batch_size x gradient_accumulation_steps must be a multiple of it.",
        json_schema_extra=_methods("grpo"),
    )
    grpo_max_completion_length: int = Field(
        256, ge=1, description="GRPO: new tokens per completion at most.", json_schema_extra=_methods("grpo")
    )
    grpo_temperature: float = Field(
        1.0, gt=0, description="GRPO: sampling temperature of the completions.", json_schema_extra=_methods("grpo")
    )
    grpo_beta: float = Field(
        0.04,
        ge=0,
        description="GRPO: weight of the KL penalty to the reference model (the base: the adapter disabled, no second "
        "copy); 0 turns it off.",
        json_schema_extra=_methods("grpo"),
    )
    grpo_length_guard: Literal["penalty", "mask", "none"] = Field(
        "penalty",
        description="GRPO, against reward hacking by length: completions that reach grpo_max_completion_length without "
        "ending are clipped; penalty: grpo_length_penalty is subtracted from their reward; mask: they are left out "
        "of the loss (DAPO); none: neither. Clipped completions are counted either way (metric clipped_ratio).",
        json_schema_extra=_methods("grpo"),
    )
    grpo_length_penalty: float = Field(
        1.0,
        gt=0,
        description="GRPO with grpo_length_guard=penalty: subtracted from a clipped completion's reward.",
        json_schema_extra=_methods("grpo"),
    )
    grpo_format_regex: str | None = Field(
        None,
        min_length=1,
        description="GRPO format guard: a Python regular expression the whole completion must match (re.fullmatch, "
        "dot matching newlines); a completion that does not gets 0 from every reward source (the length penalty "
        "still applies). Unset: off.",
        json_schema_extra=_methods("grpo"),
    )

    rloo_num_generations: int = Field(
        4,
        ge=2,
        description="RLOO: completions sampled per prompt; each one's baseline is the mean reward of the others "
        "(leave-one-out). per_device_train_batch_size x gradient_accumulation_steps must be a multiple of it.",
        json_schema_extra=_methods("rloo"),
    )
    rloo_max_completion_length: int = Field(
        256, ge=1, description="RLOO: new tokens per completion at most.", json_schema_extra=_methods("rloo")
    )
    rloo_temperature: float = Field(
        1.0, gt=0, description="RLOO: sampling temperature of the completions.", json_schema_extra=_methods("rloo")
    )
    rloo_beta: float = Field(
        0.05,
        ge=0,
        description="RLOO: weight of the KL penalty to the reference model (the base: the adapter disabled, no second "
        "copy of the weights), TRL 1.16's RLOOConfig default.",
        json_schema_extra=_methods("rloo"),
    )
    rloo_epsilon: float = Field(
        0.2,
        gt=0,
        description="RLOO: clip range of the policy ratio (PPO's epsilon); the clip fraction is reported per step.",
        json_schema_extra=_methods("rloo"),
    )

    @model_validator(mode="after")
    def _combinations(self) -> TrainerConfig:
        problems = []
        for name in sorted(self.model_fields_set):
            allowed = (TrainerConfig.model_fields[name].json_schema_extra or {}).get("x-tuneyard-methods")
            if allowed and self.method not in allowed:
                problems.append(
                    f"{name} applies to method {' or '.join(allowed)} only and has no effect with method={self.method}; "
                    "remove it"
                )
        if self.method in PREFERENCE_METHODS and not self.use_lora:
            for name in sorted(self.model_fields_set & set(ADAPTER_FIELDS)):
                problems.append(f"{name} has no effect with method={self.method} and use_lora=false; remove it")
            if self.merge:
                problems.append("merge=true needs an adapter, but method=dpo with use_lora=false trains all weights")
        if self.method == "qlora" and self.distribution == "deepspeed":
            problems.append(
                "method=qlora with distribution=deepspeed is not supported; use distribution=fsdp (the 4-bit weights "
                "sharded), ddp (one 4-bit model per GPU) or method=lora"
            )
        if self.dpo_label_smoothing and self.dpo_loss_type not in LABEL_SMOOTHING_LOSS_TYPES:
            problems.append(
                f"dpo_label_smoothing={self.dpo_label_smoothing} has no effect with dpo_loss_type={self.dpo_loss_type} "
                f"(TRL reads it in {', '.join(LABEL_SMOOTHING_LOSS_TYPES)} only); use dpo_loss_type=robust for noisy "
                "preference labels, or remove it"
            )
        if self.dpo_loss_type == "exo_pair" and not self.dpo_label_smoothing:
            problems.append(
                "dpo_loss_type=exo_pair needs dpo_label_smoothing above 0 (its epsilon; the EXO paper uses 1e-3)"
            )
        if self.early_stopping_patience and self.save_steps % self.eval_steps:
            problems.append(
                f"early stopping keeps the best checkpoint, so save_steps ({self.save_steps}) must be a multiple of "
                f"eval_steps ({self.eval_steps})"
            )
        if self.method == "grpo":
            problems.extend(self._grpo_problems())
        if self.method == "rloo":
            problems.extend(self._rloo_problems())
        if problems:
            raise ValueError("; ".join(problems))
        if self.learning_rate is None:
            self.learning_rate = default_learning_rate(self.method, self.use_lora)
            self.model_fields_set.discard("learning_rate")  # the method's default, not set by the config
        return self

    def _grpo_problems(self) -> list[str]:
        problems = []  # a run without graders or reward model: grpo.read_inputs (the graders may come as a channel)
        if "grpo_length_penalty" in self.model_fields_set and self.grpo_length_guard != "penalty":
            problems.append(
                f"grpo_length_penalty has no effect with grpo_length_guard={self.grpo_length_guard}; remove it"
            )
        if self.grpo_format_regex is not None:
            try:  # as grpo.py compiles it; re.compile also raises OverflowError and RecursionError
                re.compile(self.grpo_format_regex, re.DOTALL)
            except (re.error, OverflowError, RecursionError) as err:
                problems.append(f"grpo_format_regex is not a Python regular expression ({err}); fix the pattern")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.grpo_num_generations:
            problems.append(
                f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a multiple of "
                f"grpo_num_generations ({self.grpo_num_generations}): each batch holds whole groups of completions"
            )
        if self.early_stopping_patience:
            problems.append("early_stopping_patience needs eval_loss, which method=grpo does not compute; remove it")
        if self.distribution in ("fsdp", "deepspeed"):
            problems.append(f"method=grpo runs with distribution none or ddp (got {self.distribution})")
        if self.overlong_rows == "truncate":
            problems.append(
                "method=grpo drops prompts with no room for a completion within max_length (a cut prompt loses its "
                "question); remove overlong_rows=truncate"
            )
        return problems

    def _rloo_problems(self) -> list[str]:
        problems = []  # a run without reward_model or its channel: rloo.read_inputs, before any weights load
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.rloo_num_generations:
            problems.append(
                f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a multiple of "
                f"rloo_num_generations ({self.rloo_num_generations}): each batch holds whole groups of completions"
            )
        if self.early_stopping_patience:
            problems.append("early_stopping_patience needs eval_loss, which method=rloo does not compute; remove it")
        if self.distribution in ("fsdp", "deepspeed"):
            problems.append(f"method=rloo runs with distribution none or ddp (got {self.distribution})")
        if self.overlong_rows == "truncate":
            problems.append(
                "method=rloo drops prompts with no room for a completion within max_length (a cut prompt loses its "
                "question); remove overlong_rows=truncate"
            )
        return problems

    @property
    def trains_adapter(self) -> bool:
        return self.method in ("lora", "qlora", "grpo", "rloo") or (self.method in PREFERENCE_METHODS and self.use_lora)

    @property
    def target_modules(self) -> str | list[str]:
        if self.lora_target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]

    @property
    def modules_to_save(self) -> list[str] | None:
        if self.lora_modules_to_save is None:
            return None
        return [name.strip() for name in self.lora_modules_to_save.split(",") if name.strip()]

    @property
    def dpo_loss_types(self) -> tuple[list[str], list[float] | None]:
        """TRL's DPOConfig loss_type and loss_weights: the loss, and with rpo_alpha the chosen responses' NLL."""
        if self.rpo_alpha is None:
            return [self.dpo_loss_type], None
        return [self.dpo_loss_type, "sft"], [1.0, self.rpo_alpha]


def default_learning_rate(method: str, use_lora: bool) -> float:
    if method in PREFERENCE_METHODS:
        return DEFAULT_LEARNING_RATES[f"{method}-{'lora' if use_lora else 'full'}"]
    return DEFAULT_LEARNING_RATES[method]


def _unquote(value: Any) -> Any:
    """Some SageMaker clients JSON-encode string values ("\"cosine\""); undo that."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def from_hyperparameters(raw: dict[str, Any]) -> TrainerConfig:
    """Validates hyperparameters.json: unknown keys and bad values fail with a message naming the key and fix."""
    ours = {k: _unquote(v) for k, v in raw.items() if not k.startswith(SAGEMAKER_KEY_PREFIXES)}
    known = list(TrainerConfig.model_fields)
    unknown = [k for k in ours if k not in TrainerConfig.model_fields]
    if unknown:
        hints = []
        for key in unknown:
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()  # a recipe's camelCase name: useDora -> use_dora
            close = [snake] if snake in known else difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hints.append(f'unknown hyperparameter "{key}"' + (f' (did you mean "{close[0]}"?)' if close else ""))
        raise ConfigError("; ".join(hints) + f". Valid names: {', '.join(known)}.")
    try:
        return TrainerConfig.model_validate(ours)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"])
            given = f" (got {e['input']!r})" if where and not isinstance(e["input"], dict) else ""
            problems.append(f"{where}: {e['msg']}{given}" if where else e["msg"].removeprefix("Value error, "))
        raise ConfigError("invalid hyperparameters: " + "; ".join(problems)) from None


def json_schema() -> dict[str, Any]:
    schema = TrainerConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "tuneyard-trainer-config", **schema}
