"""Merging a LoRA adapter into its base model, for serving without PEFT."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from . import templates


def merge_adapter(base_source: str, adapter_dir: Path, out_dir: Path) -> None:
    """Writes base + adapter as one bf16 model. The base is reloaded in bf16 (never merged onto a 4-bit base,
    whose rounding would be baked into every weight)."""
    base = AutoModelForCausalLM.from_pretrained(
        base_source, dtype=torch.bfloat16, device_map="auto" if torch.cuda.is_available() else None
    )
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    templates.fit_embeddings(base, tokenizer)  # the rows of tokens a chat template added (trained in the adapter)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if (adapter_dir / "generation_config.json").exists():  # train writes it: the stop tokens of the chat template
        merged.generation_config = GenerationConfig.from_pretrained(str(adapter_dir))
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
