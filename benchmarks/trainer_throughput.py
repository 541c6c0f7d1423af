"""Training throughput of the Tuneyard trainer's settings against plain TRL SFTTrainer defaults.

Random-initialised Llama-style models built from a config (nothing downloaded): ~1B (Llama-3.2-1B shape) and
~8B (Llama-3.1-8B shape). Sequences of random length (64..2048 tokens) of random token ids; our settings pack
them padding-free into 2048-token blocks, plain TRL pads each batch. Reported per GPU: non-padding tokens per
second (after warm-up steps), peak GPU memory, and MFU = 6 * parameters * tokens/s / peak bf16 FLOP/s (the
usual model-FLOPs convention; LoRA does fewer real FLOPs, so its MFU reads low by design).

    python benchmarks/trainer_throughput.py                 # 1B and 8B, LoRA and QLoRA, on one GPU
    python benchmarks/trainer_throughput.py --tiny --cpu    # smoke test of the code path (no GPU)

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training-images" / "trainer"))

from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from tokenizers import Tokenizer, models  # noqa: E402
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from tuneyard_trainer import train  # noqa: E402
from tuneyard_trainer.config import TrainerConfig  # noqa: E402
from tuneyard_trainer.sagemaker_env import SageMakerEnv  # noqa: E402

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512),
}


class StepTimer(TrainerCallback):
    """Tokens and seconds after the warm-up steps."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = None
        self.tokens_at_start = 0
        self.seconds = 0.0
        self.tokens = 0

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.start, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen
        elif self.start is not None:
            self.seconds = time.perf_counter() - self.start
            self.tokens = state.num_input_tokens_seen - self.tokens_at_start


def make_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_model(shape: str, folder: Path, cpu: bool) -> int:
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    dtype = torch.float32 if cpu else torch.bfloat16
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    return params


def make_dataset(rows: int, max_length: int, vocab: int, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max_length // 32, max_length + 1, (rows,), generator=generator)
    return Dataset.from_list(
        [{"input_ids": torch.randint(3, vocab, (int(n),), generator=generator).tolist()} for n in lengths]
    )


def run_ours(method, model_dir, tokenizer, dataset, args, out) -> SFTTrainer:
    config = TrainerConfig(
        base_model=str(model_dir), method=method, max_length=args.max_length, packing=True,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, logging_steps=10_000,
        eval_steps=10_000, save_steps=10_000, warmup_ratio=0, learning_rate=2e-4,
    )
    trainer_args = train._trainer_args(config, SageMakerEnv(out))
    trainer_args.update(max_steps=args.steps, eval_strategy="no", save_strategy="no")
    sft_args = SFTConfig(**trainer_args, packing=True, packing_strategy="bfd", completion_only_loss=False)
    return SFTTrainer(
        model=train.load_model(config, str(model_dir)), args=sft_args, train_dataset=dataset,
        processing_class=tokenizer, peft_config=train.lora_config(config),
    )


def run_plain(method, model_dir, tokenizer, dataset, args, out) -> SFTTrainer:
    """TRL as a newcomer would call it: defaults everywhere but batch size, steps and length."""
    sft_args = SFTConfig(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        max_length=args.max_length, report_to="none", include_num_input_tokens_seen="non_padding",
        bf16=not args.cpu, use_cpu=args.cpu, save_strategy="no",
    )
    quantization = BitsAndBytesConfig(load_in_4bit=True) if method == "qlora" else None
    return SFTTrainer(
        model=str(model_dir), args=sft_args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=LoraConfig(task_type="CAUSAL_LM"), quantization_config=quantization,
    )


def measure(setup, method, model_dir, tokenizer, dataset, args, out) -> dict:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    build = run_ours if setup == "tuneyard" else run_plain
    trainer = build(method, model_dir, tokenizer, dataset, args, out)
    timer = StepTimer(args.warmup_steps)
    trainer.add_callback(timer)
    trainer.train()
    tokens_per_second = timer.tokens / timer.seconds if timer.seconds else float("nan")
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    del trainer
    return {"tokens_per_second": tokens_per_second, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model instead of 1B and 8B")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (smoke test; QLoRA is skipped)")
    parser.add_argument("--sizes", default="1b,8b")
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak per GPU (H100 SXM: 989)")
    args = parser.parse_args()
    if args.tiny:
        args.sizes, args.max_length, args.rows = "tiny", min(args.max_length, 256), min(args.rows, 64)
        args.steps, args.warmup_steps = min(args.steps, 6), min(args.warmup_steps, 2)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: pass --cpu (with --tiny) for a smoke test")

    device = "CPU" if args.cpu else torch.cuda.get_device_name()
    lines = [
        f"Device: {device}; sequence length {args.max_length}; batch {args.batch_size}/GPU; "
        f"{args.steps} steps ({args.warmup_steps} warm-up not timed)",
        "",
        "| model | method | setup | params | tokens/s/GPU | peak GPU mem (GiB) | MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer = make_tokenizer(root / "tokenizer")
        for shape in args.sizes.split(","):
            model_dir = root / shape
            params = make_model(shape, model_dir, args.cpu)
            tokenizer.save_pretrained(model_dir)
            dataset = make_dataset(args.rows, args.max_length, SHAPES[shape]["vocab_size"], seed=0)
            for method in args.methods.split(","):
                for setup in ("tuneyard", "trl-defaults"):
                    if method == "qlora" and not torch.cuda.is_available():
                        lines.append(f"| {shape} | {method} | {setup} | {params / 1e6:,.0f}M | n/a (needs CUDA) | | |")
                        continue
                    result = measure(setup, method, model_dir, tokenizer, dataset, args, root / "out")
                    mfu = 6 * params * result["tokens_per_second"] / (args.peak_tflops * 1e12)
                    lines.append(
                        f"| {shape} | {method} | {setup} | {params / 1e6:,.0f}M | {result['tokens_per_second']:.0f} "
                        f"| {result['peak_gib']:.1f} | {mfu:.1%} |"
                    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
