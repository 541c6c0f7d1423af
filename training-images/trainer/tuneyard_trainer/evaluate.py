"""`evaluate`: held-out loss and perplexity of the base and the tuned model, and the probe set's loss before and
after tuning (forgetting), written as eval.json for the pipeline's gate."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from .chat import sft_dataset
from .data import render_sft
from .metrics import format_line
from .sagemaker_env import ChannelError, SageMakerEnv
from .train import TRAINING_CONFIG, TokenMeanSFTTrainer, compute_dtype, load_dataset_channel

SCHEMA_VERSION = 1
DEFAULT_MAX_LENGTH = 2048


def locate_tuned(folder: Path) -> tuple[str, Path]:
    """("adapter" | "full", path) in what train wrote: model/adapter is preferred (exactly what was trained)."""
    for kind, marker in (("adapter", "adapter_config.json"), ("full", "config.json")):
        if (folder / marker).exists():
            return kind, folder
        if (folder / kind / marker).exists():
            return kind, folder / kind
    raise ChannelError(
        f"the adapter channel ({folder}) holds neither a LoRA adapter (adapter_config.json) nor a model "
        "(config.json); point it at the training job's model output"
    )


def mean_loss(
    model,
    tokenizer,
    rows: list[dict[str, Any]],
    responses_only: bool,
    max_length: int,
    scratch: Path,
    batch_size: int = 4,
) -> float:
    """Mean loss per label token of a model over rows (the same tokenisation and masking as training; the figure
    does not depend on `batch_size`)."""
    dataset = sft_dataset(rows, tokenizer, responses_only)
    args = SFTConfig(
        output_dir=str(scratch / "trainer"),
        per_device_eval_batch_size=batch_size,
        max_length=max_length,
        report_to="none",
        bf16=compute_dtype() == torch.bfloat16,
        gradient_checkpointing=False,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = TokenMeanSFTTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer
    )
    return float(trainer.evaluate()["eval_loss"])


def _figures(model, tokenizer, eval_rows, probe_rows, responses_only, max_length, scratch) -> dict[str, float | None]:
    eval_loss = mean_loss(model, tokenizer, eval_rows, responses_only, max_length, scratch)
    probe = None
    if probe_rows is not None:
        probe = mean_loss(model, tokenizer, probe_rows, responses_only, max_length, scratch)
    return {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0)), "probe_loss": probe}


def run(env: SageMakerEnv) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base_source = env.channel_model("model", scratch)
        tuned_root = env.channel_model("adapter", scratch)
        if base_source is None or tuned_root is None:
            raise ChannelError("evaluate needs the model (base weights) and adapter (training output) channels")
        kind, tuned = locate_tuned(tuned_root)
        training = _training_config(tuned_root)
        method = training.get("method", "sft")
        eval_report = load_dataset_channel(env, "eval", method)
        if eval_report is None:
            raise ChannelError("evaluate needs the eval channel (one JSONL file of held-out rows)")
        probe_report = load_dataset_channel(env, "probe", "sft")
        completion_only = training.get("completion_only_loss", True)
        max_length = int(training.get("max_length", DEFAULT_MAX_LENGTH))
        eval_rows = render_sft(eval_report.rows, eval_report.format)  # preference rows: prompt and chosen response
        probe_rows = render_sft(probe_report.rows, probe_report.format) if probe_report else None

        tokenizer = AutoTokenizer.from_pretrained(str(tuned))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        load = {"dtype": compute_dtype(), "device_map": "auto" if torch.cuda.is_available() else None}
        base = AutoModelForCausalLM.from_pretrained(str(base_source), **load)
        base_figures = _figures(base, tokenizer, eval_rows, probe_rows, completion_only, max_length, scratch)
        if kind == "adapter":
            tuned_model = PeftModel.from_pretrained(base, str(tuned))
        else:
            del base
            tuned_model = AutoModelForCausalLM.from_pretrained(str(tuned), **load)
        tuned_figures = _figures(tuned_model, tokenizer, eval_rows, probe_rows, completion_only, max_length, scratch)

    report = {
        "schema_version": SCHEMA_VERSION,
        "base": base_figures,
        "tuned": tuned_figures,
        "eval_loss_ratio": tuned_figures["eval_loss"] / base_figures["eval_loss"],
        "forgetting_increase": (
            tuned_figures["probe_loss"] - base_figures["probe_loss"] if probe_rows is not None else None
        ),
        "examples": len(eval_rows),
    }
    text = json.dumps(report, indent=2) + "\n"
    for folder in (env.model_dir, env.output_data_dir):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(text, encoding="utf-8")
    print(format_line(0, {k: tuned_figures[k] for k in ("eval_loss", "eval_perplexity")}), flush=True)
    print(f"wrote {env.model_dir / 'eval.json'}: eval_loss_ratio={report['eval_loss_ratio']:.6g}", flush=True)
    return 0


def _training_config(tuned_root: Path) -> dict[str, Any]:
    """The trainer config the model was trained with (method, max_length, loss masking), when train wrote it."""
    path = tuned_root / TRAINING_CONFIG
    return json.loads(path.read_text(encoding="utf-8"))["config"] if path.exists() else {}
