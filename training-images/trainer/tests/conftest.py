"""Shared fixtures: a tokenizer trained here, tiny Llama-style models built from a config, and SageMaker-shaped
job folders. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

TRAINER_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TRAINER_DIR.parents[1]
FIXTURES = REPO_ROOT / "test" / "fixtures" / "datasets"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

WORDS = [
    ("cat", "chat"), ("dog", "chien"), ("bird", "oiseau"), ("horse", "cheval"), ("fish", "poisson"),
    ("house", "maison"), ("tree", "arbre"), ("water", "eau"), ("bread", "pain"), ("apple", "pomme"),
    ("book", "livre"), ("sun", "soleil"), ("moon", "lune"), ("car", "voiture"), ("door", "porte"),
    ("milk", "lait"), ("cheese", "fromage"), ("sea", "mer"), ("star", "etoile"), ("road", "route"),
]


def sft_rows() -> list[dict]:
    """A small learnable task: translate a word, as chat conversations."""
    return [
        {"messages": [{"role": "user", "content": f"Translate to French: {en}"}, {"role": "assistant", "content": fr}]}
        for en, fr in WORDS
    ]


def dpo_rows() -> list[dict]:
    """Preference pairs: the translation is chosen over a refusal."""
    return [{"prompt": f"Translate to French: {en}", "chosen": fr, "rejected": "I do not know."} for en, fr in WORDS]


def probe_rows() -> list[dict]:
    return [{"text": f"The {en} and the {WORDS[(i + 3) % len(WORDS)][0]} are near the road."} for i, (en, _) in enumerate(WORDS)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    texts = [f"Translate to French: {en} {fr} The {en} and the are near road." for en, fr in WORDS]
    for path in FIXTURES.glob("*.jsonl"):
        texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return texts


def build_tokenizer(
    folder: Path, special: list[str] = SPECIAL, pad: str = "<pad>", eos: str = "<|end|>", template: str = CHAT_TEMPLATE
):
    """A byte-level BPE tokenizer trained on the fixture text (by default: its template ends turns with eos)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, eos_token=eos, bos_token=None, unk_token=None)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_chatml_tokenizer(folder: Path, template: str):
    """Qwen2.5's special tokens: eos (and pad) <|endoftext|>, turns ended by <|im_end|>."""
    return build_tokenizer(
        folder, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>", "<|endoftext|>", template
    )


def build_model(folder: Path, tokenizer, seed: int = 0) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory) -> Path:
    """A tokenizer trained on the fixture text and a randomly initialised 2-layer Llama: the `model` channel."""
    folder = tmp_path_factory.mktemp("base-model")
    tokenizer = build_tokenizer(folder)
    build_model(folder, tokenizer)
    return folder


class Job:
    """A SageMaker-shaped folder ($TUNEYARD_ML_ROOT) for one training or evaluation job."""

    def __init__(self, root: Path, base_model_dir: Path):
        self.root = root
        self.base_model_dir = base_model_dir

    def configure(self, hyperparameters: dict, train: list[dict] | None = None, **channels: list[dict]) -> Job:
        config = self.root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in hyperparameters.items()}
        (config / "hyperparameters.json").write_text(json.dumps({"base_model": "tiny-llama", **values}))
        model = self.root / "input" / "data" / "model"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            model.symlink_to(self.base_model_dir, target_is_directory=True)
        if train is not None:
            write_jsonl(self.root / "input" / "data" / "train" / "train.jsonl", train)
        for name, rows in channels.items():
            write_jsonl(self.root / "input" / "data" / name / f"{name}.jsonl", rows)
        return self

    def run(self, mode: str = "train") -> int:
        """Runs the entry point in this process (fast: the libraries are already imported)."""
        from tuneyard_trainer.__main__ import main

        previous = os.environ.get("TUNEYARD_ML_ROOT")
        os.environ["TUNEYARD_ML_ROOT"] = str(self.root)
        try:
            return main([mode])
        finally:
            if previous is None:
                del os.environ["TUNEYARD_ML_ROOT"]
            else:
                os.environ["TUNEYARD_ML_ROOT"] = previous

    def popen(self, mode: str = "train", **extra_env: str) -> subprocess.Popen:
        """Runs `python -m tuneyard_trainer <mode>` as SageMaker would (a separate process)."""
        env = {**os.environ, "TUNEYARD_ML_ROOT": str(self.root), "PYTHONPATH": str(TRAINER_DIR), **extra_env}
        return subprocess.Popen(
            [sys.executable, "-m", "tuneyard_trainer", mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def failure(self) -> str | None:
        path = self.root / "output" / "failure"
        return path.read_text() if path.exists() else None

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


@pytest.fixture
def job(tmp_path, base_model_dir) -> Job:
    return Job(tmp_path / "ml", base_model_dir)


@pytest.fixture
def make_job(tmp_path, base_model_dir):
    def make(name: str) -> Job:
        return Job(tmp_path / name, base_model_dir)

    return make


# Hyperparameters for quick CPU runs of the tiny model.
FAST = {
    "max_length": 64,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "eval_steps": 5,
    "save_steps": 5,
    "warmup_ratio": 0,
    "lr_scheduler_type": "constant",
    "gradient_checkpointing": False,
}


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def base_model_digest(base_model_dir) -> str:
    """The base model's files before the shared runs train on it (they must leave it untouched)."""
    return folder_digest(base_model_dir)


# Trained runs shared by every test that only reads their outputs (each costs seconds of CPU on 2 cores).
# LoRA: test_train (adapter, archive), test_evaluate (the adapter channel), test_resume (the uninterrupted
# reference: 4 epochs of 5 steps, checkpoints at 10 and 20).
LORA_RUN = {**FAST, "method": "lora", "learning_rate": 1e-2, "num_train_epochs": 4, "save_steps": 10, "eval_steps": 10}
# DPO with an adapter, in its own process (stdout as SageMaker sees it): test_metrics (every metric line) and
# test_train (the preference margin moved).
DPO_LORA_RUN = {**FAST, "method": "dpo", "use_lora": True, "num_train_epochs": 3, "dpo_beta": 0.5, "learning_rate": 2e-2}


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, base_model_dir, base_model_digest) -> Job:
    job = Job(tmp_path_factory.mktemp("lora-run") / "ml", base_model_dir)
    job.configure(LORA_RUN, train=sft_rows())
    assert job.run() == 0, job.failure
    return job


@pytest.fixture(scope="session")
def dpo_lora_run(tmp_path_factory, base_model_dir) -> tuple[Job, str]:
    """The job and its stdout."""
    job = Job(tmp_path_factory.mktemp("dpo-lora-run") / "ml", base_model_dir)
    job.configure(DPO_LORA_RUN, train=dpo_rows())
    process = job.popen()
    stdout = process.communicate(timeout=300)[0]
    assert process.returncode == 0, stdout[-3000:]
    return job, stdout
