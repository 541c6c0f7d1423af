"""Training throughput of the Tuneyard trainer against TRL's SFTTrainer defaults, same model, same data, same script.

Random-initialised Llama-shaped models built from a config (nothing downloaded) train LoRA (r=16, alpha 32, every
linear layer: Tuneyard's defaults, given to every setup so only batching, precision and loading differ) and QLoRA on
chat rows of lognormal length (about 6% longer than max_length, as in a realistic mix), rendered with a chat
template and tokenized with their loss masks by the trainer's own code (chat.sft_dataset); every setup gets the same
rows in the same order (same seed, same row count).

Setups:
- tuneyard: the trainer's own path (train.build_trainer with the config's defaults: padding-free batches where the
  model keeps flattened sequences apart, bf16 base weights on a GPU, NF4 + double quantisation for QLoRA).
- trl-defaults: SFTTrainer(model=<folder>) with SFTConfig's defaults (padded batches, fp32 weights, bf16 autocast
  on a GPU, `BitsAndBytesConfig(load_in_4bit=True)` for QLoRA). On CPU: bf16=False (autocast on CPU is slower).
- trl-bf16 (GPU only): the same with bf16 weights (`model_init_kwargs={"dtype": bfloat16}`, bf16 4-bit compute),
  so the comparison does not credit Tuneyard for loading bf16 weights alone.

Reported per setup: non-padding input tokens per second over the timed steps (after warm-up steps; Trainer's
`num_input_tokens_seen`), peak memory (GPU: torch.cuda.max_memory_allocated; CPU: the worker process's peak RSS and
its growth during training), MFU = 6 * parameters * tokens/s / peak FLOP/s (model-FLOPs convention; LoRA does fewer
real FLOPs, so it reads low by design; on CPU only with --peak-tflops), the mean training loss of the timed steps
(same data and masks: the setups should agree), and the ratio of each median to the trl-defaults median of the same
run. Each measurement runs in a process of its own (a clean allocator and a peak RSS of its own); setups alternate
within each repeat.

    python benchmarks/trainer_throughput.py               # GPU: 1B and 8B shapes, LoRA and QLoRA, max_length 2048
    python benchmarks/trainer_throughput.py --tiny        # CPU: 22.7M-param Llama shape, 2,000 rows, max_length 1024,
                                                          #      batch 4, one torch thread, medians of 3 (~8 minutes)
    python benchmarks/trainer_throughput.py --smoke       # CPU, seconds: the code path and the report's fields

Prints a markdown table; --json writes every measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINER = Path(__file__).resolve().parents[1] / "training-images" / "trainer"
sys.path.insert(0, str(TRAINER))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    "tiny": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=32768, tie_word_embeddings=False),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False),
}
MODES = {
    "gpu": dict(shapes=["1b", "8b"], methods=["lora", "qlora"], rows=2000, max_length=2048, batch=4, steps=30,
                warmup=5, repeats=1, setups=["tuneyard", "trl-defaults", "trl-bf16"]),
    "tiny": dict(shapes=["tiny"], methods=["lora"], rows=2000, max_length=1024, batch=4, steps=8, warmup=2,
                 repeats=3, setups=["tuneyard", "trl-defaults"]),
    "smoke": dict(shapes=["smoke"], methods=["lora"], rows=40, max_length=96, batch=4, steps=3, warmup=1,
                  repeats=1, setups=["tuneyard", "trl-defaults"]),
}
BASELINE = "trl-defaults"
SPECIAL = ["<pad>", "<unk>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
OVERLONG_Z = 1.555  # P(N(0,1) > z) = 6%: the share of rows longer than max_length


# ---------------------------------------------------------------------------------------------------- fixtures


def make_tokenizer(folder: Path, vocab_size: int):
    """One token per word (w0, w1, ...), the template's markers as special tokens; turns end with <|end|> (eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    vocab.update({f"w{i}": len(SPECIAL) + i for i in range(vocab_size - len(SPECIAL))})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>", unk_token="<unk>", bos_token=None
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL[3:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_model(shape: str, folder: Path, dtype_name: str) -> int:
    """A random-initialised Llama of the shape, saved in `dtype_name`; returns its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, pad_token_id=0, eos_token_id=2,
                         bos_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config)
    model.to(getattr(torch, dtype_name)).save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    return params


def make_rows(count: int, max_length: int, vocab_size: int, seed: int) -> list[dict]:
    """Chat rows whose rendered length is lognormal (median ~max_length/4.7, 6% over max_length, clipped to 40 ..
    1.54 x max_length); longer rows have more turns; a quarter of the multi-turn rows mark their first assistant
    turn weight 0."""
    import random

    rng = random.Random(seed)
    mu, high = math.log(max_length) - OVERLONG_Z, round(max_length * 1.54)
    words = vocab_size - len(SPECIAL)
    rows = []
    for _ in range(count):
        total = min(max(round(rng.lognormvariate(mu, 1.0)), 40), high)
        pairs = 1 + (total > 300) + (total > 800)
        messages = 2 * pairs
        content = max(total - 2 * messages, messages)  # each message adds its role marker and <|end|>
        sizes = [content // messages + (i < content % messages) for i in range(messages)]
        chat = []
        for i, size in enumerate(sizes):
            role = "user" if i % 2 == 0 else "assistant"
            message = {"role": role, "content": " ".join(f"w{rng.randrange(words)}" for _ in range(size))}
            if role == "assistant" and i == 1 and pairs > 1 and rng.random() < 0.25:
                message["weight"] = 0
            chat.append(message)
        rows.append({"messages": chat})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------- worker


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timer(warmup: int):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Tokens, seconds and losses of the steps after the warm-up ones."""

        def __init__(self):
            self.start = None
            self.tokens_at_start = 0
            self.seconds = 0.0
            self.cpu_seconds = 0.0
            self.tokens = 0
            self.losses = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if state.global_step == warmup:
                self.start, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen
                self.cpu_start = time.process_time()
            elif self.start is not None:
                self.seconds = time.perf_counter() - self.start
                self.cpu_seconds = time.process_time() - self.cpu_start
                self.tokens = state.num_input_tokens_seen - self.tokens_at_start

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.global_step > warmup:
                self.losses.append(float(logs["loss"]))

    return StepTimer()


def tuneyard_trainer(spec: dict, tokenizer, callbacks):
    """The trainer's own path: the config's defaults, built as a training job builds it."""
    from tuneyard_trainer import train
    from tuneyard_trainer.config import TrainerConfig
    from tuneyard_trainer.data import validate_file
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    config = TrainerConfig(
        base_model=spec["model_dir"], method=spec["method"], max_length=spec["max_length"],
        per_device_train_batch_size=spec["batch"], gradient_accumulation_steps=1, warmup_ratio=0,
        logging_steps=1, eval_steps=100_000, save_steps=100_000,
        # TRL's truncation, so every setup trains the same rows in the same order (the default drops them)
        overlong_rows="truncate", **spec.get("overrides", {}),
    )
    report = validate_file(Path(spec["train"]), config.method)
    held_out = validate_file(Path(spec["eval"]), config.method)
    inputs = train.Inputs(config, spec["model_dir"], report, held_out)
    trainer = train.build_trainer(inputs, SageMakerEnv(Path(spec["out"])), tokenizer, callbacks)
    trainer.args.max_steps = spec["steps"]
    return trainer


def trl_trainer(spec: dict, tokenizer, callbacks, bf16_weights: bool):
    """SFTTrainer as its documentation calls it: defaults everywhere but what the benchmark fixes (steps, batch,
    length, the LoRA settings) and, on CPU, bf16 autocast off."""
    import torch
    from transformers import BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from tuneyard_trainer import train
    from tuneyard_trainer.chat import sft_dataset
    from tuneyard_trainer.config import TrainerConfig
    from tuneyard_trainer.data import render_sft, validate_file

    cpu = not torch.cuda.is_available()
    config = TrainerConfig(base_model=spec["model_dir"], method=spec["method"])
    rows = validate_file(Path(spec["train"]), config.method).rows
    dataset = sft_dataset(render_sft(rows, "chat"), tokenizer, config.completion_only_loss)
    quantization = None
    if config.method == "qlora":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, **({"bnb_4bit_compute_dtype": torch.bfloat16} if bf16_weights else {})
        )
    args = SFTConfig(
        output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
        max_length=spec["max_length"], report_to="none", include_num_input_tokens_seen="non_padding",
        save_strategy="no", logging_steps=1, disable_tqdm=True, use_cpu=cpu, bf16=not cpu,
        model_init_kwargs={"dtype": torch.bfloat16} if bf16_weights else None,
    )
    return SFTTrainer(
        model=spec["model_dir"], args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=train.lora_config(config), quantization_config=quantization, callbacks=callbacks,
    )


def worker(spec: dict) -> dict:
    """One measurement, in this process."""
    import torch

    from tuneyard_trainer import train

    tokenizer = train.load_tokenizer(spec["model_dir"], "chat")
    timer = _timer(spec["warmup"])
    if spec["setup"] == "tuneyard":
        trainer = tuneyard_trainer(spec, tokenizer, [timer])
    else:
        trainer = trl_trainer(spec, tokenizer, [timer], bf16_weights=spec["setup"] == "trl-bf16")
    batching = "padding-free" if getattr(trainer.data_collator, "padding_free", False) else "padded"
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mib()
    trainer.train()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "setup": spec["setup"],
        "batching": batching,
        "attention": trainer.model.config._attn_implementation,
        "tokens": timer.tokens,
        "seconds": timer.seconds,
        "tokens_per_second": timer.tokens / timer.seconds if timer.seconds else float("nan"),
        "tokens_per_cpu_second": timer.tokens / timer.cpu_seconds if timer.cpu_seconds else float("nan"),
        "mean_loss": statistics.fmean(timer.losses) if timer.losses else float("nan"),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "peak_rss_mib": peak_rss,
        "train_rss_growth_mib": peak_rss - rss_before,
    }


# ---------------------------------------------------------------------------------------------------- driver


def run_worker(spec: dict) -> dict:
    process = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, timeout=3600
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(f"{spec['setup']} failed (exit {process.returncode}):\n{process.stderr[-4000:]}")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=TRAINER, capture_output=True, text=True)
        measured = ["training-images/trainer/tuneyard_trainer", "training-images/trainer/configs",
                    "benchmarks/trainer_throughput.py"]
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *measured], cwd=TRAINER.parents[1],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="CPU: a 22.7M-param Llama shape (see above)")
    mode.add_argument("--smoke", action="store_true", help="CPU, seconds: the code path and the report's fields")
    parser.add_argument("--shapes", help="comma-separated: 1b, 8b (GPU mode)")
    parser.add_argument("--methods", help="comma-separated: lora, qlora")
    parser.add_argument("--repeats", type=int, help="measurements per setup (the median is reported)")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s per device for MFU "
                        "(default: 989 on a GPU, H100/H200 SXM; none on CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per CPU measurement (default 1: "
                        "on a shared machine, threads spin-waiting for a core another process holds swamp the "
                        "differences measured)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    import torch

    name = "tiny" if args.tiny else "smoke" if args.smoke else "gpu"
    plan = dict(MODES[name])
    if args.shapes:
        plan["shapes"] = args.shapes.split(",")
    if args.methods:
        plan["methods"] = args.methods.split(",")
    if args.repeats:
        plan["repeats"] = args.repeats
    gpu = name == "gpu"
    if gpu and not torch.cuda.is_available():
        parser.error("no CUDA device: the 1B/8B shapes need a GPU; --tiny or --smoke run on CPU")
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU modes measure the CPU even where a GPU is present
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the workers' torch threads
        torch.set_num_threads(args.threads)
    peak_tflops = args.peak_tflops or (989.0 if gpu else None)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for shape in plan["shapes"]:
            model_dir = root / shape
            tokenizer = make_tokenizer(model_dir, SHAPES[shape]["vocab_size"])
            params = make_model(shape, model_dir, "bfloat16" if gpu else "float32")
            rows = make_rows(plan["rows"] + 20, plan["max_length"], len(tokenizer), seed=0)
            train_file = write_jsonl(root / f"{shape}-train.jsonl", rows[:-20])
            eval_file = write_jsonl(root / f"{shape}-eval.jsonl", rows[-20:])
            for method in plan["methods"]:
                for repeat in range(plan["repeats"]):
                    for setup in plan["setups"]:
                        spec = {
                            "setup": setup, "method": method, "model_dir": str(model_dir), "train": str(train_file),
                            "eval": str(eval_file), "max_length": plan["max_length"], "batch": plan["batch"],
                            "steps": plan["steps"], "warmup": plan["warmup"], "out": str(root / "out" / setup),
                        }
                        result = run_worker(spec)
                        result.update(shape=shape, method=method, params=params, repeat=repeat)
                        if peak_tflops:
                            result["mfu"] = 6 * params * result["tokens_per_second"] / (peak_tflops * 1e12)
                        results.append(result)
                        print(f"# {shape} {method} {setup} #{repeat + 1}: {result['tokens_per_second']:.0f} tok/s",
                              file=sys.stderr, flush=True)
    report = summarize(results, plan, name, peak_tflops)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"mode": name, "plan": plan, "machine": machine(), "commit": _commit(),
                                         "results": results}, indent=1) + "\n")


def summarize(results: list[dict], plan: dict, name: str, peak_tflops: float | None) -> str:
    gpu = name == "gpu"
    lines = [
        f"Mode {name}: {machine()}; commit {_commit()}; {time.strftime('%Y-%m-%d')}",
        f"{plan['rows']} chat rows, max_length {plan['max_length']}, batch {plan['batch']}, {plan['steps']} steps "
        f"({plan['warmup']} warm-up not timed), median of {plan['repeats']}",
        "",
        "| model | params | method | setup | batching | tokens/s (runs) | x trl-defaults | "
        + ("peak GPU GiB | MFU |" if gpu else "tokens/CPU-s | peak RSS MiB | RSS growth in training MiB |")
        + " mean loss |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("" if gpu else "---|"),
    ]
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault((result["shape"], result["method"], result["setup"]), []).append(result)
    medians = {key: statistics.median(r["tokens_per_second"] for r in runs) for key, runs in groups.items()}
    for (shape, method, setup), runs in groups.items():
        median = medians[(shape, method, setup)]
        baseline = medians.get((shape, method, BASELINE))
        ratio = f"{median / baseline:.2f}x" if baseline else ""
        spread = ", ".join(f"{r['tokens_per_second']:.0f}" for r in runs)
        if gpu:
            memory = f"{max(r['peak_gpu_gib'] for r in runs):.1f}"
            mfu = statistics.median(r["mfu"] for r in runs)
            extra = f"{memory} | {mfu:.1%} |"
        else:
            extra = (f"{statistics.median(r['tokens_per_cpu_second'] for r in runs):.0f} | "
                     f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f} | "
                     f"{statistics.median(r['train_rss_growth_mib'] for r in runs):.0f} |")
        loss = statistics.median(r["mean_loss"] for r in runs)
        lines.append(
            f"| {shape} | {runs[0]['params'] / 1e6:,.1f}M | {method} | {setup} | {runs[0]['batching']} "
            f"({runs[0]['attention']}) | {median:.0f} ({spread}) | {ratio} | {extra} {loss:.4f} |"
        )
    if not gpu and not peak_tflops:
        lines.append("\nMFU: not reported on CPU (no peak FLOP/s given: --peak-tflops).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
