"""`train`: SFT, LoRA, QLoRA, DPO and reward models (reward.py) on TRL's trainers, with resume from checkpoints/ and a clean stop on SIGTERM."""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)
from trl import DPOConfig, DPOTrainer, RewardTrainer, SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from . import attention, launch, merge, reward, templates
from .chat import ChatTemplateError, end_of_turn_token, fit_to_length, preference_dataset, sft_dataset, stop_token_ids
from .config import CUDA_OPTIMIZERS, SFT_METHODS, TrainerConfig, from_hyperparameters
from .data import DatasetReport, render_dpo, render_sft, split_rows, validate_file
from .metrics import MetricsCallback, format_line
from .report import HISTORY_FILE
from .sagemaker_env import STOP_EXIT_CODE, ChannelError, SageMakerEnv, write_adapter_archive

TRAINING_CONFIG = "training_config.json"
ADAPTER_ARCHIVE = "adapter.tar.gz"  # the ArtifactUrl of an adapter inference component (constructs/vllm-endpoint)


class PreflightError(ValueError):
    """A job that cannot run on this machine or with this data; found before any weights load."""


@dataclass
class Inputs:
    config: TrainerConfig
    model_source: str
    train: DatasetReport
    eval: DatasetReport | None
    # rows of the train and eval splits longer than max_length tokens (chat.fit_to_length), counted by build_trainer
    overlong_rows: dict[str, int] = field(default_factory=dict)


def load_dataset_channel(env: SageMakerEnv, channel: str, method: str) -> DatasetReport | None:
    path = env.channel_jsonl(channel)
    if path is None:
        return None
    report = validate_file(path, method)
    if report.errors:
        raise PreflightError(
            f"channel {channel}: {len(report.errors)} invalid row(s) in {path.name}; fix them and upload a new "
            f"dataset version (`tuneyard validate` shows the same errors):\n{report.describe_errors()}"
        )
    return report


def read_inputs(env: SageMakerEnv) -> Inputs:
    """Config, datasets and environment checks: everything that can fail before weights load."""
    config = from_hyperparameters(env.read_hyperparameters())
    if config.method == "qlora" and not torch.cuda.is_available():
        raise PreflightError(
            "method=qlora needs an NVIDIA GPU: bitsandbytes' 4-bit kernels run on CUDA only. Run on a GPU instance "
            "(ml.g5, ml.g6, ml.p4d, ml.p5) or use method=lora."
        )
    if config.attn_implementation == "flash_attention_2" and not _flash_attention_available():
        raise PreflightError(
            "attn_implementation=flash_attention_2 needs CUDA and the flash-attn package; use auto or sdpa."
        )
    if config.optim in CUDA_OPTIMIZERS and not torch.cuda.is_available():
        raise PreflightError(
            f"optim={config.optim} is a bitsandbytes optimiser, which needs an NVIDIA GPU (CUDA); run on a GPU "
            "instance or use optim=adamw_torch_fused"
        )
    if config.use_liger_kernel and not torch.cuda.is_available():
        raise PreflightError("use_liger_kernel=true needs an NVIDIA GPU: Liger's kernels are Triton kernels for CUDA")
    if config.distribution == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise PreflightError(
            "distribution=deepspeed needs DeepSpeed, which this image was built without; rebuild it with "
            "--build-arg DEEPSPEED_VERSION=0.19.8 (see training-images/trainer/README.md) or use distribution=fsdp"
        )
    train = load_dataset_channel(env, "train", config.method)
    if train is None:
        raise ChannelError("the train channel is missing or empty; it must hold one JSONL file")
    eval_report = load_dataset_channel(env, "eval", config.method)
    if eval_report is not None and eval_report.format != train.format:
        raise PreflightError(
            f"the eval channel is {eval_report.format} but the train channel is {train.format}; use one format"
        )
    model_dir = env.channel("model")
    if model_dir is None and "://" in config.base_model:
        # an S3 (or other) URI is what the model channel is filled from, never a Hub id: without the channel
        # from_pretrained would try to download it from the Hub (and fail obscurely, or hang under isolation)
        raise PreflightError(
            f"base_model is {config.base_model}, but the model channel is missing or empty: pass that prefix as the "
            "job's `model` channel (input/data/model/, a Hugging Face model folder), or set base_model to a Hub id"
        )
    return Inputs(config, str(model_dir) if model_dir else config.base_model, train, eval_report)


def _flash_attention_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def attention_implementation(config: TrainerConfig, flat: bool = False) -> str:
    """`auto`: flash attention when installed (varlen kernels on padding-free batches); otherwise, for padding-free
    batches (`flat`), sdpa run sequence by sequence (attention.py), else transformers' sdpa."""
    if config.attn_implementation != "auto":
        return config.attn_implementation
    if _flash_attention_available():
        return "flash_attention_2"
    return attention.register() if flat else "sdpa"


def bf16_capable() -> bool:
    """A GPU with bf16 units: compute capability 8.0 or later (A100, A10G, L4, L40S, H100...). Not
    torch.cuda.is_bf16_supported(), which by default also says True for GPUs that only emulate bf16 (V100 = sm70,
    T4 = sm75), where bf16 matmuls run without tensor cores."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def compute_dtype() -> torch.dtype:
    """The dtype of mixed precision: bf16 on GPUs with bf16 units, fp16 on older GPUs (V100, T4: Trainer's fp16
    autocast with loss scaling), fp32 on CPU."""
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if bf16_capable() else torch.float16


def qlora_compute_dtype() -> torch.dtype:
    """The dtype 4-bit layers dequantize to: bf16, or fp16 on GPUs without bf16 units (bitsandbytes computes in the
    input's dtype; its kernels need CUDA, so there is no CPU case)."""
    return torch.float16 if torch.cuda.is_available() and not bf16_capable() else torch.bfloat16


def quantization_config(sharded: bool = False) -> BitsAndBytesConfig:
    """QLoRA: NF4 weights, double quantisation of the constants, bf16 compute (fp16 on GPUs without bf16). `sharded`
    (FSDP): the packed 4-bit weights are stored in the compute dtype, the dtype of every other weight, so FSDP can
    flatten and shard them with the rest (FSDP-QLoRA); otherwise bitsandbytes' uint8."""
    dtype = qlora_compute_dtype()
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype if sharded else torch.uint8,
    )


def load_tokenizer(source: str, fmt: str | None, chat_template: str | None = None) -> PreTrainedTokenizerBase:
    """The base model's tokenizer; `chat_template` (config chat_template) is applied when it has none."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    if fmt != "text" and chat_template is not None and templates.apply(tokenizer, chat_template):
        print(f"the tokenizer of {source} has no chat template: using chat_template={chat_template}", flush=True)
    if fmt != "text" and not tokenizer.chat_template:
        raise PreflightError(
            f"the tokenizer of {source} has no chat template, which {fmt} rows are rendered with; set chat_template "
            "(recipe chatTemplate) to chatml, use a base model that ships one (most instruct models do) or convert "
            "the dataset to the text format"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def weights_dtype(config: TrainerConfig) -> torch.dtype:
    """The dtype the weights load in. Trained weights are fp32 where this process holds them (one GPU, DDP): Trainer's
    bf16 autocast computes in bf16 while AdamW updates the fp32 weights (updated in bf16, most updates are below half
    a unit in the last place and round away). A frozen base stays in compute_dtype() (its LoRA adapter is fp32, see
    fp32_trainable_parameters); FSDP and DeepSpeed ZeRO-3 keep fp32 master copies of bf16 weights themselves."""
    if config.trains_adapter or config.distribution in ("fsdp", "deepspeed"):
        return compute_dtype()
    return torch.float32


def fp32_trainable_parameters(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> None:
    """Trainable parameters in fp32 (one GPU, DDP). PEFT creates LoRA weights in fp32 on a bf16 base, but TRL casts
    the adapter of a quantized (QLoRA) base to bf16. FSDP-QLoRA passes the quant storage dtype instead: FSDP shards
    the adapter together with the 4-bit weights stored in it."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def load_model(
    config: TrainerConfig, source: str, dtype: torch.dtype | None = None, flat: bool = False
) -> torch.nn.Module:
    """The model to train (in weights_dtype(config) unless `dtype` is given; `flat`: for padding-free batches)."""
    kwargs: dict[str, Any] = {
        "attn_implementation": attention_implementation(config, flat),
        "dtype": dtype or weights_dtype(config),
    }
    sharded = config.distribution == "fsdp"
    if config.method == "qlora":
        kwargs["quantization_config"] = quantization_config(sharded)
        kwargs["dtype"] = qlora_compute_dtype()
        if torch.cuda.is_available() and not sharded:
            # one 4-bit copy per process on its own GPU: under torchrun this process's GPU is LOCAL_RANK (FSDP places
            # the shards itself, from the low-memory loading its arguments set up)
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    if config.method == "reward":  # the base with a scalar score head (reward.py)
        # the head is initialised at random here, before the trainer seeds: seeded so the recipe's seed decides it
        set_seed(config.seed)
        return reward.load_model(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if config.method == "qlora" and not sharded:
        # not under FSDP: it casts the layers that stay unquantized to fp32, and FSDP shards uniform dtypes
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


# Architectures that keep the sequences of a flattened (padding-free) batch apart: flash attention through the
# cu_seq_lens TRL's collator passes (varlen kernels), sdpa and eager through the block-diagonal mask transformers
# builds from position_ids that restart at 0, sdpa_varlen (attention.py) sequence by sequence. tests/test_padding_free.py
# checks every one (each sequence of a flattened pair gets the logits it gets alone, under all three). Models with recurrent, convolutional or
# linear-attention layers (Mamba, Jamba, Bamba, Falcon-H1, Qwen3-Next, Nemotron-H, ...) carry state across the
# boundary, as do attention sinks (gpt-oss): they train on padded batches, and packing is refused for them.
PADDING_FREE_MODEL_TYPES = frozenset({
    "apertus", "arcee", "cohere", "exaone4", "gemma", "gemma2", "gemma3_text", "glm4", "granite", "llama",
    "ministral", "mistral", "mixtral", "olmo2", "olmo3", "phi", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "smollm3", "starcoder2",
})


def padding_free(config: TrainerConfig, model_type: str) -> bool:
    """SFT batches without padding: each batch's sequences flattened into one row, separated by position_ids (TRL's
    padding-free collator), where the architecture keeps them apart (PADDING_FREE_MODEL_TYPES). The same tokens
    carry loss as in a padded batch (each sequence's first label is masked, so none is predicted from the one
    before) and no compute or memory goes to padding."""
    return config.method in SFT_METHODS and model_type in PADDING_FREE_MODEL_TYPES


def lora_config(config: TrainerConfig, trainable_tokens: dict[str, list[int]] | None = None) -> LoraConfig:
    """The adapter: LoRA (DoRA, rsLoRA), the modules trained whole beside it, and the rows of new tokens
    (templates.trainable_token_indices). A reward model's score head is trained whole beside the adapter (SEQ_CLS)."""
    scored = config.method == "reward"
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        use_dora=config.use_dora,
        use_rslora=config.use_rslora,
        modules_to_save=[*(config.modules_to_save or []), reward.SCORE_HEAD] if scored else config.modules_to_save,
        trainable_token_indices=trainable_tokens,
        task_type="SEQ_CLS" if scored else "CAUSAL_LM",
    )


CHECKPOINT_MANIFEST = "tuneyard-checkpoint.json"
# config fields that change what is logged, saved or written after training, not the training itself: a checkpoint
# may be resumed with other values
_RESUMABLE_CHANGES = ("logging_steps", "save_steps", "merge")


class ForeignCheckpointError(PreflightError):
    """A checkpoint written by a run with another config, other data or another number of processes."""


def _sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def run_identity(inputs: Inputs, processes: int) -> dict[str, Any]:
    """What a checkpoint must have been written by to be resumed: the config (but _RESUMABLE_CHANGES), the train and
    eval files' SHA-256 and the number of processes (the data order and the global batch depend on it)."""
    config = {k: v for k, v in inputs.config.model_dump().items() if k not in _RESUMABLE_CHANGES}
    data = {"train": _sha256(inputs.train.path), "eval": _sha256(inputs.eval.path if inputs.eval else None)}
    return {"config": config, "data": data, "processes": processes}


def _differences(written: dict[str, Any] | None, identity: dict[str, Any]) -> list[str]:
    if written is None:
        return ["it records no run (an earlier trainer wrote it)"]
    found = []
    for key in sorted(set(written["config"]) | set(identity["config"])):
        there, here = written["config"].get(key), identity["config"].get(key)
        if there != here:
            found.append(f"{key} {there!r} there, {here!r} here")
    for split in ("train", "eval"):
        there, here = written["data"].get(split), identity["data"][split]
        if there != here:
            found.append(f"{split} data sha256 {str(there)[:12]} there, {str(here)[:12]} here")
    if written["processes"] != identity["processes"]:
        found.append(f"{written['processes']} processes there, {identity['processes']} here")
    return found


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((path / CHECKPOINT_MANIFEST).read_text(encoding="utf-8"))
        return manifest if isinstance(manifest.get("files"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def checkpoint_complete(path: Path) -> bool:
    """True when every file the manifest lists is there with its size. SageMaker uploads a checkpoint to S3 file by
    file from every host (small files such as trainer_state.json land first) and a spot restart downloads whatever
    reached S3 to every host, so the presence of one file proves nothing about the others. The manifest lists the
    files every host wrote (each process's RNG state, each process's shard of a sharded checkpoint)."""
    manifest = _manifest(path)
    if manifest is None or "trainer_state.json" not in manifest["files"]:
        return False
    for name, size in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            return False
    return True


def complete_checkpoints(folder: Path) -> dict[int, Path]:
    """The complete checkpoints (see checkpoint_complete), by step."""
    found = {}
    for path in folder.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and checkpoint_complete(path):
            found[int(match.group(1))] = path
    return found


def newest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step that is complete (see checkpoint_complete)."""
    found = complete_checkpoints(folder)
    return found[max(found)] if found else None


def train_resumably(trainer, env: SageMakerEnv, identity: dict[str, Any], stop: "StopOnSignal") -> bool:
    """Trains from this run's newest complete checkpoint, if any (resume_point), saying so; True when a stop signal
    ended training (its checkpoint is then in env.checkpoints_dir)."""
    resume = resume_point(env.checkpoints_dir, identity)
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.stopped:
        print(f"stopped after step {trainer.state.global_step}; the checkpoint is in {env.checkpoints_dir}")
        return True
    return False


def resume_point(folder: Path, identity: dict[str, Any]) -> Path | None:
    """The checkpoint to resume: the newest one complete on the disk of every process (all processes resume the same
    step), refused when another run wrote it (ForeignCheckpointError: resuming it would train neither run)."""
    found = complete_checkpoints(folder)
    steps = set(found)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        everyone: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(everyone, sorted(steps))
        steps = set.intersection(*(set(s) for s in everyone))
    if not steps:
        return None
    path = found[max(steps)]
    differences = _differences(_manifest(path).get("run"), identity)
    if differences:
        raise ForeignCheckpointError(
            f"{path} belongs to another run ({'; '.join(differences)}). A job resumes only its own checkpoints: "
            "give this job a checkpoint location of its own (the training job's CheckpointConfig S3Uri) or empty "
            "this one"
        )
    return path


class CheckpointManifest(TrainerCallback):
    """After every checkpoint save, once every process has saved its part, each process lists the files on its
    host's copy of the checkpoint and the main process writes the union, with the run's identity (run_identity),
    last. Every host's files are listed: a host's RNG states and shards reach the others only through S3."""

    def __init__(self, identity: dict[str, Any]):
        self.identity = identity

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:
            torch.distributed.barrier()
        files = {
            p.relative_to(folder).as_posix(): p.stat().st_size
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(CHECKPOINT_MANIFEST)
        }
        everyone = [files]
        if distributed:
            everyone = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, files)
        if state.is_world_process_zero:
            union: dict[str, int] = {}
            for listing in everyone:  # rank 0's own listing first
                for name, size in listing.items():
                    union.setdefault(name, size)
            partial = folder / (CHECKPOINT_MANIFEST + ".partial")
            manifest = {"files": dict(sorted(union.items())), "run": self.identity}
            partial.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            os.replace(partial, folder / CHECKPOINT_MANIFEST)
        return control


class StopOnSignal(TrainerCallback):
    """On SIGTERM (or the launcher's stop flag), save a checkpoint at the end of the current step and stop.
    Under torchrun every rank takes the decision together (an all-reduce of the flag), so all ranks save the
    same step."""

    def __init__(self, stop_flag: Path):
        self.stop_flag = stop_flag
        self.signalled = False
        self.stopped = False
        self._previous = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def uninstall(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True
        print("received SIGTERM: saving a checkpoint at the end of this step, then stopping", flush=True)

    def _requested(self) -> bool:
        local = self.signalled or self.stop_flag.exists()
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return local
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1 if local else 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._requested():
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control


def _datasets(inputs: Inputs, tokenizer: PreTrainedTokenizerBase) -> tuple[Dataset, Dataset]:
    config = inputs.config
    if inputs.eval is not None:
        train_rows, eval_rows = inputs.train.rows, inputs.eval.rows
    else:
        train_rows, eval_rows = split_rows(inputs.train.rows, config.eval_fraction, config.seed)
    fmt = inputs.train.format
    if config.method in ("dpo", "reward"):
        render = lambda rows: preference_dataset(render_dpo(rows, fmt), tokenizer)  # noqa: E731
    else:
        render = lambda rows: sft_dataset(render_sft(rows, fmt), tokenizer, config.completion_only_loss)  # noqa: E731
    datasets = []
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        dataset, inputs.overlong_rows[split] = fit_to_length(
            render(rows), tokenizer, config.max_length, config.overlong_rows
        )
        if len(dataset) == 0:
            raise PreflightError(
                f"every row of the {split} split is longer than max_length={config.max_length} tokens, and "
                "overlong_rows=drop leaves them out; raise max_length or set overlong_rows=truncate"
            )
        datasets.append(dataset)
    return datasets[0], datasets[1]


def _token_mean(prediction: EvalPrediction) -> dict[str, float]:
    sums = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1, 2).sum(axis=0)
    return {"token_loss": float(sums[0] / max(sums[1], 1.0))}


class TokenMeanSFTTrainer(SFTTrainer):
    """SFTTrainer whose `eval_loss` is the NLL summed over every label token of the eval set divided by their count.
    Trainer's own is a mean of per-batch means, so a batch with few label tokens weighs as much as one with many and
    the figure changes with the eval batch size. The sums go through Trainer's eval loop (gathered across processes,
    padding of the last batch dropped); early stopping, the best checkpoint and the metric lines all see this one.

    Evaluation batches are padded, one row per sequence, whatever the training batches are (padding-free training
    flattens a batch into one row): the loop counts and drops the repeated sequences that even out the last batch
    across processes by rows, and the eval set is never packed (eval_packing=False)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, compute_metrics=_token_mean, **kwargs)
        if self.args.eval_packing or (self.args.eval_packing is None and self.args.packing):
            raise ValueError("token-weighted evaluation needs one sequence per row: set eval_packing=False")
        self.eval_collator = DataCollatorForLanguageModeling(pad_token_id=self.processing_class.pad_token_id)

    def get_eval_dataloader(self, eval_dataset=None):
        training, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = training

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Per sequence of an eval batch: [summed NLL of its label tokens, their count], from one forward through
        TRL's fused LM head (per-token log-probabilities computed in fp32 tiles): the (batch, length, vocabulary)
        logits are never built, so evaluating holds no more memory than a training step's loss does, and it takes one
        forward pass where SFTTrainer's evaluation takes two (the fused loss, then the full logits for metrics)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs, use_cache=False, fused_lm_head=True)
        sums = torch.stack([-outputs.log_probs.float().sum(dim=1), outputs.label_mask.sum(dim=1).float()], dim=1)
        return None, sums, inputs["labels"]

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        for key in [k for k in output.metrics if k.endswith("_token_loss")]:
            output.metrics[key.removesuffix("_token_loss") + "_loss"] = output.metrics.pop(key)
        return output


def _trainer_args(config: TrainerConfig, env: SageMakerEnv) -> dict[str, Any]:
    amp = compute_dtype()
    return {
        "output_dir": str(env.checkpoints_dir),
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_ratio,  # below 1: a fraction of the training steps (transformers 5)
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps or -1,  # -1: num_train_epochs decides
        "optim": config.optim,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "torch_compile": config.torch_compile,
        "use_liger_kernel": config.use_liger_kernel,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "gradient_checkpointing": config.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "max_length": config.max_length,
        "eval_strategy": "steps",
        "eval_steps": config.eval_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "logging_steps": config.logging_steps,
        "load_best_model_at_end": config.early_stopping_patience > 0,
        "metric_for_best_model": "eval_loss",
        "include_num_input_tokens_seen": "non_padding",
        "bf16": amp == torch.bfloat16,
        "fp16": amp == torch.float16,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": torch.cuda.is_available(),
        # without a GPU, torchrun workers form a gloo process group (accelerate only does so with use_cpu)
        "use_cpu": not torch.cuda.is_available(),
        **launch.distribution_args(config),
    }


def build_trainer(inputs: Inputs, env: SageMakerEnv, tokenizer, callbacks: list[TrainerCallback]):
    config = inputs.config
    try:
        train_ds, eval_ds = _datasets(inputs, tokenizer)
    except ChatTemplateError as err:
        raise PreflightError(f"the chat template of {inputs.model_source} cannot be trained on: {err}") from None
    # The arguments first: building them sets up the process group, this process's GPU and the FSDP loading
    # environment (cpu_ram_efficient_loading), which from_pretrained reads.
    collator, flat = None, False
    if config.method == "dpo":
        loss_type, loss_weights = config.dpo_loss_types
        args = DPOConfig(
            **_trainer_args(config, env),
            beta=config.dpo_beta,
            loss_type=loss_type,
            loss_weights=loss_weights,
            label_smoothing=config.dpo_label_smoothing,
            precompute_ref_log_probs=config.precompute_ref_log_probs,
        )
    elif config.method == "reward":
        args = reward.config(_trainer_args(config, env))
    else:
        model_type = AutoConfig.from_pretrained(inputs.model_source).model_type
        flat = padding_free(config, model_type)
        if config.packing and not flat:
            raise PreflightError(
                f"packing=true needs a model that keeps packed sequences apart, and {model_type} models do not "
                "(recurrent, convolutional or linear-attention layers, or attention sinks, carry state from one "
                "sequence to the next); set packing=false"
            )
        trainer_args = _trainer_args(config, env)
        if flat:
            # the flattened row holds no padding; "non_padding" would skip every token equal to the pad token, which
            # is eos in tokenizers without one
            trainer_args["include_num_input_tokens_seen"] = "all"
        args = SFTConfig(
            **trainer_args,
            # best-fit decreasing packing is padding-free too: TRL builds the same collator
            packing=config.packing,
            packing_strategy="bfd",
            eval_packing=False,
            neftune_noise_alpha=config.neftune_noise_alpha,
        )
        if flat and not config.packing:
            # TRL's own padding-free collator. Not SFTConfig(padding_free=True): without packing TRL then refuses a
            # max_length (it would not truncate), and rows longer than max_length must still be cut to it.
            collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    model = load_model(config, inputs.model_source, flat=flat)
    resized = templates.fit_embeddings(model, tokenizer)
    template_ids = templates.template_token_ids(tokenizer)
    new_tokens = templates.trainable_token_indices(model, template_ids, config.modules_to_save)
    peft_config = lora_config(config, new_tokens) if config.trains_adapter else None
    if config.early_stopping_patience:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)]
    common = {
        "model": model,
        "args": args,
        "train_dataset": train_ds,
        "eval_dataset": eval_ds,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": callbacks,
    }
    if config.method == "dpo":
        # The frozen reference of full-weight DPO is loaded here, in compute_dtype(), when the policy is fp32 (it needs
        # no fp32 copy; TRL would load it in the policy's dtype) or when a chat template added tokens (TRL would load
        # it from the base model's files, without their rows). None when the reference log-probabilities are
        # precomputed: TRL computes them with the policy before the first step.
        full_in_fp32 = not config.trains_adapter and weights_dtype(config) != compute_dtype()
        reference = None
        if not config.trains_adapter and not config.precompute_ref_log_probs and (full_in_fp32 or resized):
            reference = load_model(config, inputs.model_source, compute_dtype())
            templates.fit_embeddings(reference, tokenizer)
            if resized:  # the same new rows as the policy's (mean resizing samples them)
                reference.load_state_dict(model.state_dict())
        trainer = DPOTrainer(**common, ref_model=reference)
    elif config.method == "reward":
        trainer = RewardTrainer(**common)
    else:
        trainer = TokenMeanSFTTrainer(**common, data_collator=collator)
    if new_tokens and config.method != "reward":  # a reward model has no LM head
        templates.fused_head_compatible(trainer.model)
    if config.distribution in ("none", "ddp"):
        fp32_trainable_parameters(trainer.model)
    elif config.method == "qlora":  # FSDP-QLoRA
        fp32_trainable_parameters(trainer.model, qlora_compute_dtype())
    return trainer


def _final_eval(trainer) -> dict[str, float]:
    """The eval metrics of the model that is written: with early stopping, the best checkpoint's (Trainer loads it at
    the end: load_best_model_at_end), otherwise the last step's (evaluated now unless the schedule just did)."""
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best is not None:
        step = int(Path(best).name.rsplit("-", 1)[1])
        return next((e for e in reversed(evals) if e["step"] == step), None) or trainer.evaluate()
    if evals and evals[-1]["step"] == trainer.state.global_step:
        return evals[-1]
    return trainer.evaluate()


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def write_training_config(
    path: Path, inputs: Inputs, artifacts: dict[str, str], final: dict[str, float], stops: dict[str, Any]
) -> None:
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("torch", "transformers", "trl", "peft")}
    document = {
        "schema_version": 1,
        "config": inputs.config.model_dump(),
        "model_source": inputs.model_source,
        "dataset": {
            "format": inputs.train.format,
            "train_rows": len(inputs.train.rows),
            "eval_channel": inputs.eval is not None,
            "overlong_rows": inputs.overlong_rows,
        },
        "artifacts": artifacts,
        **stops,
        "final_metrics": final,
        "versions": versions,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def launch_torchrun(config: TrainerConfig, env: SageMakerEnv) -> int | None:
    """On the process SageMaker started: torchrun's exit code when the job spans several processes (torchrun runs this
    job again in each, as workers), else None once a stop flag left by an earlier attempt is cleared. None in workers."""
    if launch.is_worker():
        return None
    layout = launch.plan(config, env.read_resource_config(), launch.processes_per_node())
    if layout is not None:
        return launch.run_torchrun(env, layout)
    env.stop_flag.unlink(missing_ok=True)
    return None


def run(env: SageMakerEnv) -> int:
    """Trains; returns 0 when done, STOP_EXIT_CODE when SIGTERM stopped it after a checkpoint."""
    method = from_hyperparameters(env.read_hyperparameters()).method
    if method == "grpo":
        from . import grpo  # online RL on prompt-only rows: its own data, rewards and trainer

        return grpo.run(env)
    if method == "rloo":
        from . import rloo  # RLHF against a reward model (RLOO, in place of PPO): prompt-only rows like grpo

        return rloo.run(env)
    inputs = read_inputs(env)
    config = inputs.config
    launched = launch_torchrun(config, env)
    if launched is not None:
        return launched
    tokenizer = load_tokenizer(inputs.model_source, inputs.train.format, config.chat_template)
    identity = run_identity(inputs, int(os.environ.get("WORLD_SIZE", "1")))
    resume_point(env.checkpoints_dir, identity)  # another run's checkpoint fails the job before any weights load
    stop = StopOnSignal(env.stop_flag)
    stop.install()
    try:
        trainer = build_trainer(inputs, env, tokenizer, [MetricsCallback(), stop, CheckpointManifest(identity)])
        if _is_main_process():
            print(format_line(0, {"overlong_rows": inputs.overlong_rows["train"]}), flush=True)
        if train_resumably(trainer, env, identity, stop):
            return 0 if launch.is_worker() else STOP_EXIT_CODE
        final = _final_eval(trainer)
        history = list(trainer.state.log_history)  # train loss per logging step, eval loss per evaluation: the report
        kind = "adapter" if config.trains_adapter else "full"
        if kind == "full" and config.distribution in ("none", "ddp"):
            trainer.model.to(compute_dtype())  # written in bf16 on a GPU (the fp32 weights were for the updates)
        # generation (transformers, vLLM) stops on any of these: the chat template's end-of-turn token, then eos
        generation = None
        if config.method != "reward":  # a reward model generates nothing
            generation = trainer.model.generation_config
            generation.eos_token_id = stop_token_ids(tokenizer)
        if trainer.is_fsdp_enabled:
            # checkpoints are sharded (each process writes its own shard, in seconds); the model written is whole:
            # gathered once, weights only, on the main process's CPU
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(env.model_dir / kind))
    finally:
        stop.uninstall()
    if not _is_main_process():
        return 0
    artifacts = {kind: kind}
    if config.method == "reward" and kind == "adapter":
        # loaded alone later (RL runs, the eval job): the adapter and its score head merged into the base
        reward.merge_adapter(inputs.model_source, env.model_dir / "adapter", env.model_dir / "full", compute_dtype())
        artifacts["full"] = "full"
    elif kind == "adapter":
        generation.save_pretrained(str(env.model_dir / "adapter"))  # PEFT saves none; merge and serving read it
        write_adapter_archive(env.model_dir / "adapter", env.model_dir / ADAPTER_ARCHIVE)
        artifacts["adapter_archive"] = ADAPTER_ARCHIVE
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if config.merge:
        merge.merge_adapter(inputs.model_source, env.model_dir / "adapter", env.model_dir / "full")
        artifacts["full"] = "full"
    summary = {k: float(v) for k, v in final.items() if isinstance(v, (int, float))}
    stop_ids = generation.eos_token_id if generation is not None else stop_token_ids(tokenizer)
    stops = {"end_of_turn_token": end_of_turn_token(tokenizer), "stop_token_ids": stop_ids}
    write_training_config(env.model_dir / TRAINING_CONFIG, inputs, artifacts, summary, stops)
    document = {"schema_version": 1, "log_history": history}  # read by the eval job's report (report.read_history)
    (env.model_dir / HISTORY_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"done: wrote {', '.join(sorted(artifacts))} to {env.model_dir}", flush=True)
    return 0
