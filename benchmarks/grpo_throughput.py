"""Online RL throughput of the Tuneyard trainer (GRPO, and RLOO) against TRL's GRPOTrainer / RLOOTrainer defaults:
same model, same prompts, same script.

A random-initialised Llama-shaped model built from a config (nothing downloaded, the tokenizer built here) trains a
LoRA adapter (Tuneyard's: r=16, alpha 32, every linear layer, given to every setup) on chat prompts of 16-96 words.
What the benchmark fixes for every setup: the model, the LoRA config, the prompts, num_generations,
max_completion_length, max_steps, per_device_train_batch_size (and no gradient accumulation: one generation batch a
step), the seed, logging every step (the figures are read from the step logs) and the reward: for GRPO a regex
grader (a completion that starts with a word ending in 7; about 4% of the tiny model's completions do), for
RLOO a random-initialised reward model of the policy's shape (one score).

Setups:
- tuneyard: the trainer's own path: grpo.read_inputs / rloo.read_inputs on a SageMaker-shaped job folder, then
  grpo.build_trainer / rloo.build_trainer with every other setting at the config's defaults (the grader through the
  graders hyperparameter; for GRPO the KL penalty grpo_beta=0.04 to the adapter-disabled base, the length guard's
  penalty reward, generation stopping on the chat template's end of turn and eos; fp32 trainable parameters; on a
  GPU bf16 base weights).
- trl-defaults: GRPOTrainer / RLOOTrainer(model=<folder>, reward_funcs=<a Python function with the grader's rule> /
  <the reward model's folder>, peft_config=<the same LoRA>) with GRPOConfig / RLOOConfig defaults (GRPO beta=0: no
  reference forward; RLOO beta=0.05; fp32 weights with bf16 autocast on a GPU). On CPU: bf16=False.
- trl-bf16 (GPU only): the same with bf16 weights (`model_init_kwargs={"dtype": bfloat16}`), so Tuneyard is not
  credited for loading bf16 weights alone.

Reported per setup, over the timed steps (after the warm-up steps): optimiser steps per second, completion tokens per
second (generated tokens: TRL's per-step mean completion length x the completions of the step) and total tokens per
second (prompt + completion tokens: TRL's num_input_tokens_seen), peak memory (GPU: torch.cuda.max_memory_allocated;
CPU: the worker's peak RSS and its growth during training; and on CPU steps per CPU-second of the worker, steadier
than wall time on a shared machine), the mean completion length and reward, and the ratio of each median to the
trl-defaults median of the same run. Each measurement runs in a process of its own (a clean
allocator and a peak RSS of its own); setups alternate within each repeat.

    python benchmarks/grpo_throughput.py               # GPU (--gpu): Llama 3.2 1B shape in bf16, 8 completions of up to
                                                       #   256 tokens a step, 12 steps (2 warm-up), GRPO and RLOO
    python benchmarks/grpo_throughput.py --tiny        # CPU: 22.7M-param Llama shape, 8 completions of up to 64
                                                       #   tokens a step, 8 steps (2 warm-up), one torch thread,
                                                       #   medians of 3 (~15 minutes on 2 busy cores)
    python benchmarks/grpo_throughput.py --smoke       # CPU, seconds: the code path and the report's fields

Prints a markdown table; --json writes every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_throughput import SHAPES, TRAINER, _rss_mib, machine, make_model, make_tokenizer  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODES = {
    "gpu": dict(shape="1b", methods=["grpo", "rloo"], prompts=64, generations=8, batch=8, completion=256, steps=12,
                warmup=2, repeats=1, setups=["tuneyard", "trl-defaults", "trl-bf16"]),
    "tiny": dict(shape="tiny", methods=["grpo", "rloo"], prompts=64, generations=8, batch=8, completion=64, steps=8,
                 warmup=2, repeats=3, setups=["tuneyard", "trl-defaults"]),
    "smoke": dict(shape="smoke", methods=["grpo", "rloo"], prompts=8, generations=4, batch=4, completion=8, steps=2,
                  warmup=1, repeats=1, setups=["tuneyard", "trl-defaults"]),
}
BASELINE = "trl-defaults"
SEED = 42
# the GRPO reward: a regex grader, as the evaluation's graders define it (Tuneyard) and as a plain function (TRL)
GRADER = {"type": "regex", "name": "starts_with_7", "input": "{{ sample.output_text }}", "pattern": r"^\s*w\d*7\b"}
PATTERN = re.compile(GRADER["pattern"])


# ---------------------------------------------------------------------------------------------------- fixtures


def make_prompts(count: int, vocab_size: int, seed: int) -> list[dict]:
    """Prompt-only chat rows of 16-96 random words (one token each)."""
    rng = random.Random(seed)
    words = vocab_size - 6  # the tokenizer's special tokens come first
    texts = [" ".join(f"w{rng.randrange(words)}" for _ in range(rng.randint(16, 96))) for _ in range(count)]
    return [{"messages": [{"role": "user", "content": text}]} for text in texts]


def make_reward_model(shape: str, folder: Path, tokenizer, dtype_name: str) -> None:
    """A random-initialised sequence-classification Llama of the policy's shape (one score), saved with its tokenizer:
    what a reward job leaves for RLOO."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, pad_token_id=0, eos_token_id=2,
                         bos_token_id=None, num_labels=1)
    torch.manual_seed(1)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForSequenceClassification(config)
    model.to(getattr(torch, dtype_name)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model


def job_folder(spec: dict) -> Path:
    """A SageMaker-shaped job folder for the trainer: hyperparameters (strings, as SageMaker passes them), the model,
    train and (RLOO) reward_model channels."""
    root = Path(spec["out"])
    method = spec["method"]
    hyperparameters = {
        "base_model": "benchmark-llama", "method": method, "seed": SEED, "max_steps": spec["steps"],
        "per_device_train_batch_size": spec["batch"], "gradient_accumulation_steps": 1, "logging_steps": 1,
        "save_steps": 100_000, f"{method}_num_generations": spec["generations"],
        f"{method}_max_completion_length": spec["completion"],
    }
    if method == "grpo":
        hyperparameters["graders"] = json.dumps([GRADER])
    else:
        hyperparameters["reward_model"] = "benchmark-reward-model"
    hyperparameters.update(spec.get("overrides", {}))  # an A/B of one setting (RESULTS.md)
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    data = root / "input" / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "train.jsonl").write_text(Path(spec["prompts"]).read_text())
    (data / "model").symlink_to(spec["model_dir"], target_is_directory=True)
    if method == "rloo":
        (data / "reward_model").symlink_to(spec["reward_dir"], target_is_directory=True)
    return root


# ---------------------------------------------------------------------------------------------------- worker


def _timer(warmup: int):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Seconds, tokens and step logs of the steps after the warm-up ones."""

        def __init__(self):
            self.start = None
            self.seconds = 0.0
            self.cpu_seconds = 0.0
            self.steps = 0
            self.tokens_at_start = 0
            self.tokens = 0
            self.logs: list[dict] = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if state.global_step == warmup:
                self.start, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen
                self.cpu_start = time.process_time()
            elif self.start is not None:
                self.seconds = time.perf_counter() - self.start
                self.cpu_seconds = time.process_time() - self.cpu_start
                self.steps = state.global_step - warmup
                self.tokens = state.num_input_tokens_seen - self.tokens_at_start

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs and state.global_step > warmup:
                self.logs.append(dict(logs))

    return StepTimer()


def tuneyard_trainer(spec: dict, callbacks: list):
    """The trainer's own path: its preflight on a job folder, then the method's build_trainer."""
    from tuneyard_trainer import grpo, rloo
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    env = SageMakerEnv(job_folder(spec))
    if spec["method"] == "grpo":
        inputs, tokenizer = grpo.read_inputs(env)
        trainer, _ = grpo.build_trainer(inputs, env, tokenizer, callbacks)
    else:
        inputs, tokenizer = rloo.read_inputs(env)
        trainer = rloo.build_trainer(inputs, env, tokenizer, callbacks)
    return trainer


def starts_with_7(completions, **kwargs) -> list[float]:
    """The grader's rule as a TRL reward function: 1 when the completion starts with a word ending in 7."""
    texts = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [1.0 if PATTERN.search(text) else 0.0 for text in texts]


def trl_trainer(spec: dict, callbacks: list, bf16_weights: bool):
    """GRPOTrainer / RLOOTrainer as their documentation calls them: defaults everywhere but what the benchmark fixes."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from tuneyard_trainer import train
    from tuneyard_trainer.config import TrainerConfig

    cpu = not torch.cuda.is_available()
    rows = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": row["messages"]} for row in rows])
    grpo = spec["method"] == "grpo"
    config_class, trainer_class = (GRPOConfig, GRPOTrainer) if grpo else (RLOOConfig, RLOOTrainer)
    args = config_class(
        output_dir=spec["out"], seed=SEED, max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
        num_generations=spec["generations"], max_completion_length=spec["completion"], logging_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=cpu, bf16=not cpu,
        model_init_kwargs={"dtype": torch.bfloat16} if bf16_weights else None,
    )
    trainer = trainer_class(
        model=spec["model_dir"], reward_funcs=starts_with_7 if grpo else spec["reward_dir"], args=args,
        train_dataset=dataset, peft_config=train.lora_config(TrainerConfig(base_model=spec["model_dir"],
                                                                           method=spec["method"])),
        callbacks=callbacks,
    )
    return trainer


def worker(spec: dict) -> dict:
    """One measurement, in this process."""
    import torch

    timer = _timer(spec["warmup"])
    if spec["setup"] == "tuneyard":
        trainer = tuneyard_trainer(spec, [timer])
    else:
        trainer = trl_trainer(spec, [timer], bf16_weights=spec["setup"] == "trl-bf16")
    rewards = list(trainer.reward_func_names)
    args = trainer.args
    # one generation batch of per_device_train_batch_size completions a step: the step's completion count
    assert args.gradient_accumulation_steps == 1 and args.steps_per_generation == 1, (
        args.gradient_accumulation_steps, args.steps_per_generation)
    assert args.num_generations == spec["generations"] and args.max_completion_length == spec["completion"]
    trainable = {str(p.dtype).removeprefix("torch.") for p in trainer.model.parameters() if p.requires_grad}
    frozen = {str(p.dtype).removeprefix("torch.") for p in trainer.model.parameters() if not p.requires_grad}
    stop_ids = trainer.eos_token_ids
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mib()
    trainer.train()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    completion_tokens = sum(log["completions/mean_length"] * args.per_device_train_batch_size for log in timer.logs)
    seconds = timer.seconds or float("nan")
    return {
        "setup": spec["setup"],
        "method": spec["method"],
        "beta": args.beta,
        "gradient_checkpointing": args.gradient_checkpointing,
        "weights": f"{'/'.join(sorted(frozen))} base, {'/'.join(sorted(trainable))} trainable"
                   + (", bf16 autocast" if args.bf16 else ""),
        "stop_ids": stop_ids,
        "rewards": rewards,
        "steps": timer.steps,
        "seconds": timer.seconds,
        "steps_per_second": timer.steps / seconds,
        "cpu_seconds": timer.cpu_seconds,
        "steps_per_cpu_second": timer.steps / (timer.cpu_seconds or float("nan")),
        "completion_tokens": completion_tokens,
        "completion_tokens_per_second": completion_tokens / seconds,
        "tokens": timer.tokens,
        "tokens_per_second": timer.tokens / seconds,
        "mean_completion_length": statistics.fmean(log["completions/mean_length"] for log in timer.logs)
        if timer.logs else float("nan"),
        # the grader's (GRPO) or the reward model's (RLOO) mean, before Tuneyard's length penalty is added
        "mean_reward": statistics.fmean(log[f"rewards/{rewards[0]}/mean"] for log in timer.logs)
        if timer.logs else float("nan"),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "peak_rss_mib": peak_rss,
        "train_rss_growth_mib": peak_rss - rss_before,
    }


# ---------------------------------------------------------------------------------------------------- driver


def run_worker(spec: dict) -> dict:
    process = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, timeout=3600,
    )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(
        f"{spec['method']} {spec['setup']} failed (exit {process.returncode}):\n{process.stderr[-4000:]}"
    )


def _commit() -> str:
    repo = TRAINER.parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        measured = ["training-images/trainer/tuneyard_trainer", "benchmarks/grpo_throughput.py",
                    "benchmarks/trainer_throughput.py"]
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *measured], cwd=repo, capture_output=True,
                               text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gpu", action="store_true", help="the default: a Llama 3.2 1B shape in bf16 on CUDA")
    mode.add_argument("--tiny", action="store_true", help="CPU: a 22.7M-param Llama shape (see above)")
    mode.add_argument("--smoke", action="store_true", help="CPU, seconds: the code path and the report's fields")
    parser.add_argument("--methods", help="comma-separated: grpo, rloo")
    parser.add_argument("--steps", type=int, help="optimiser steps per measurement, warm-up included")
    parser.add_argument("--repeats", type=int, help="measurements per setup (the median is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per CPU measurement (default 1, as in "
                        "trainer_throughput.py: on a shared machine, spinning threads swamp the differences)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    import torch

    name = "tiny" if args.tiny else "smoke" if args.smoke else "gpu"
    plan = dict(MODES[name])
    if args.methods:
        plan["methods"] = args.methods.split(",")
        unknown = set(plan["methods"]) - {"grpo", "rloo"}
        if unknown:
            parser.error(f"--methods: {', '.join(sorted(unknown))} is not a method here; use grpo, rloo or both")
    if args.steps:
        if args.steps <= plan["warmup"]:
            parser.error(f"--steps {args.steps}: must exceed the {plan['warmup']} warm-up step(s) of mode {name}")
        plan["steps"] = args.steps
    if args.repeats:
        plan["repeats"] = args.repeats
    gpu = name == "gpu"
    if gpu and not torch.cuda.is_available():
        parser.error("--gpu (the default mode) needs a CUDA device, and torch sees none: the 1B shape in bf16 is a GPU "
                     "measurement. Run it on a machine with an NVIDIA GPU, or use --tiny (CPU, minutes) or --smoke")
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU modes measure the CPU even where a GPU is present
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the workers' torch threads
        torch.set_num_threads(args.threads)

    results = []
    shape = plan["shape"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, reward_dir = root / "model", root / "reward-model"
        tokenizer = make_tokenizer(model_dir, SHAPES[shape]["vocab_size"])
        dtype = "bfloat16" if gpu else "float32"
        params = make_model(shape, model_dir, dtype)
        if "rloo" in plan["methods"]:
            make_reward_model(shape, reward_dir, tokenizer, dtype)
        prompts = root / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(row) + "\n" for row in make_prompts(plan["prompts"], len(tokenizer), 0)))
        for method in plan["methods"]:
            for repeat in range(plan["repeats"]):
                for setup in plan["setups"]:
                    spec = {
                        "setup": setup, "method": method, "model_dir": str(model_dir), "reward_dir": str(reward_dir),
                        "prompts": str(prompts), "generations": plan["generations"], "batch": plan["batch"],
                        "completion": plan["completion"], "steps": plan["steps"], "warmup": plan["warmup"],
                        "out": str(root / "out" / f"{method}-{setup}-{repeat}"),
                    }
                    result = run_worker(spec)
                    result.update(shape=shape, params=params, repeat=repeat)
                    results.append(result)
                    print(f"# {method} {setup} #{repeat + 1}: {result['steps_per_second']:.3f} steps/s, "
                          f"{result['completion_tokens_per_second']:.0f} completion tok/s", file=sys.stderr, flush=True)
    report = summarize(results, plan, name)
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"mode": name, "plan": plan, "machine": machine(), "commit": _commit(),
                                         "results": results}, indent=1) + "\n")


def summarize(results: list[dict], plan: dict, name: str) -> str:
    gpu = name == "gpu"
    columns = ["method", "setup", "beta", "weights", "steps/s (runs)", "completion tok/s", "total tok/s",
               "x trl-defaults (steps/s, completion tok/s)"]
    columns += ["peak GPU GiB"] if gpu else ["steps/CPU-s", "x trl-defaults (steps/CPU-s)", "peak RSS MiB",
                                             "RSS growth MiB"]
    columns += ["mean completion length", "mean reward (grader / reward model)"]
    lines = [
        f"Mode {name}: {machine()}; commit {_commit()}; {time.strftime('%Y-%m-%d')}",
        f"{plan['shape']} Llama shape, {plan['prompts']} prompts, {plan['generations']} completions per prompt, batch "
        f"{plan['batch']}, max_completion_length {plan['completion']}, {plan['steps']} steps ({plan['warmup']} warm-up "
        f"not timed), median of {plan['repeats']}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault((result["method"], result["setup"]), []).append(result)

    def median(method: str, setup: str, key: str) -> float | None:
        runs = groups.get((method, setup))
        return statistics.median(r[key] for r in runs) if runs else None

    def ratio(method: str, setup: str, key: str) -> str:
        base = median(method, BASELINE, key)
        return f"{median(method, setup, key) / base:.2f}x" if base else ""

    for (method, setup), runs in groups.items():
        cells = [
            method, setup, f"{runs[0]['beta']}", runs[0]["weights"],
            f"{median(method, setup, 'steps_per_second'):.3f} ("
            + ", ".join(f"{r['steps_per_second']:.3f}" for r in runs) + ")",
            f"{median(method, setup, 'completion_tokens_per_second'):.0f}",
            f"{median(method, setup, 'tokens_per_second'):.0f}",
            f"{ratio(method, setup, 'steps_per_second')}, {ratio(method, setup, 'completion_tokens_per_second')}",
        ]
        if gpu:
            cells.append(f"{max(r['peak_gpu_gib'] for r in runs):.1f}")
        else:
            cells += [
                f"{median(method, setup, 'steps_per_cpu_second'):.3f}", ratio(method, setup, "steps_per_cpu_second"),
                f"{median(method, setup, 'peak_rss_mib'):.0f}", f"{median(method, setup, 'train_rss_growth_mib'):.0f}",
            ]
        cells += [f"{median(method, setup, 'mean_completion_length'):.1f}",
                  f"{median(method, setup, 'mean_reward'):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
