"""Multiple-choice benchmarks scored by log-likelihood, as lm-evaluation-harness scores its `multiple_choice` tasks
(MMLU, HellaSwag, ARC, ...): each choice is the continuation " " + choice after the item's context; its score is the
sum of the log-probabilities of its tokens given the context; `accuracy` takes the choice with the highest sum,
`accuracy_norm` (lm-eval's acc_norm) the highest sum divided by the choice's length in characters (lm-eval's
`completion_len`: len() of the choice string, which is its byte length for ASCII text).

The context and continuation are tokenized as lm-eval's HF model does: white space at the end of the context moves to
the front of the continuation, the pair is encoded whole (no special tokens) and the continuation is the tokens after
the context's own encoding; an empty context is the eos token (or bos when the tokenizer has one); a pair longer than
`max_length` keeps its last max_length + 1 tokens. No chat template: the models are scored as base models are.

A benchmark file is JSONL, one item a line:
    {"question": "What is the capital of France?", "choices": ["Paris", "Lyon", "Nice"], "answer": 0}
    {"context": "A man is sitting on a roof. He", "choices": ["starts pulling up roofing.", "..."], "answer": 0}
`question` is asked as "Question: <question>\\nAnswer:"; `context` is used as it is (HellaSwag-style: the choice
continues it). `answer` is the 0-based index of the right choice; at least 2 choices, each a non-empty string.

lm-evaluation-harness itself is not in the image, though it would fit: lm-eval 0.4.13 installs beside the pinned
transformers 5.23 and scores a local JSONL file offline (benchmarks/lm_eval_reference.py runs it so). It brings 36
more packages (evaluate, scikit-learn, scipy, aiohttp, pytablewriter, sqlitedict, ...) into the image and the test
environment, a task definition per file and its own model wrapper, while what it computes for a multiple-choice task
is the sum and the argmax written here; the tests hold this module to lm-eval's own recorded output on fixed inputs
(tests/lm_eval_reference.json: every choice's log-likelihood within 1e-4, the same acc and acc_norm)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

DEFAULT_MAX_ITEMS = 1000
DEFAULT_BATCH_SIZE = 16
TARGET_DELIMITER = " "


class BenchmarkError(ValueError):
    """A benchmark file that is not in the documented format. `code` names the rule it breaks, the same codes as
    `tuneyard stage-benchmark` (lib/datasets/multiple-choice.ts; both run test/fixtures/benchmarks/cases.json):
    invalid-json, not-object, no-context, bad-choices, bad-answer, empty-file."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Item:
    context: str
    choices: list[str]
    answer: int


def item_of(row: Any, where: str) -> Item:
    """One benchmark line; `where` (file:line) names it in errors."""
    fix = 'expected {"question" or "context": str, "choices": [str, ...], "answer": index of the right choice}'
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: an item must be a JSON object; {fix}", "not-object")
    keys = [k for k in ("question", "context") if k in row]
    if len(keys) != 1 or not isinstance(row[keys[0]], str):
        raise BenchmarkError(f"{where}: an item needs exactly one of question or context, a string; {fix}", "no-context")
    choices = row.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise BenchmarkError(f"{where}: choices must be a list of at least 2 non-empty strings; {fix}", "bad-choices")
    answer = row.get("answer")
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)  # 1.0 is the number 1, as JSON (and TypeScript's reading of it) has it
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise BenchmarkError(
            f"{where}: answer must be the 0-based index of the right choice (0 to {len(choices) - 1}), got "
            f"{json.dumps(answer)}; {fix}",
            "bad-answer",
        )
    context = row["context"] if keys[0] == "context" else f"Question: {row['question']}\nAnswer:"
    return Item(context, list(choices), answer)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_file(path: Path) -> list[Item]:
    """The items of a JSONL file: lines split at \\n only (a JSON string may hold U+2028), a UTF-8 byte order mark
    ignored, blank lines skipped; NaN and Infinity are not JSON."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except ValueError as err:
            reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            raise BenchmarkError(f"{path.name}:{number}: not JSON ({reason}); each line must be one item", "invalid-json") from None
        items.append(item_of(row, f"{path.name}:{number}"))
    if not items:
        raise BenchmarkError(f"{path.name} holds no items; stage a JSONL file of multiple-choice items", "empty-file")
    return items


CHANNEL = "benchmarks"
CHANNEL_PREFIX = "benchmark-"


def staged(input_data: Path) -> dict[str, Path]:
    """The benchmark files of an evaluation job (input_data: /opt/ml/input/data), by name: each .jsonl file of the
    `benchmarks` channel, named by its file name, and the one .jsonl file of each `benchmark-<name>` channel (what
    PlanRun makes of a RunRequest's benchmarkDatasets), named <name>."""
    found: dict[str, Path] = {}
    channels = sorted(p for p in input_data.iterdir() if p.is_dir()) if input_data.is_dir() else []
    for channel in channels:
        if channel.name != CHANNEL and not channel.name.startswith(CHANNEL_PREFIX):
            continue
        files = sorted(p for p in channel.rglob("*.jsonl") if p.is_file())
        if not files or (channel.name != CHANNEL and len(files) != 1):
            raise BenchmarkError(
                f"the {channel.name} channel ({channel}) holds {len(files)} .jsonl files; "
                + ("stage at least one" if channel.name == CHANNEL else "a benchmark-<name> channel holds exactly one")
            )
        for path in files:
            name = path.stem if channel.name == CHANNEL else channel.name[len(CHANNEL_PREFIX) :]
            if name in found:
                raise BenchmarkError(
                    f"two benchmark files are named {name} ({found[name]} and {path}); rename one (a benchmark is "
                    "named by its file in the benchmarks channel, by its channel benchmark-<name> otherwise)"
                )
            found[name] = path
    return found


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair: (context tokens, continuation tokens)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer(continuation, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return whole[: len(context_ids)], whole[len(context_ids) :]


@torch.inference_mode()
def loglikelihoods(
    model,
    tokenizer: PreTrainedTokenizerBase,
    pairs: list[tuple[str, str]],
    max_length: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[float]:
    """Sum of log p(continuation token | everything before) of each (context, continuation), in their order. Batched
    longest first with left padding (positions from the attention mask), so every continuation ends at the last column
    and only the last columns' logits are computed (logits_to_keep) and normalised, in float32."""
    requests = []
    for context, continuation in pairs:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        if not continuation_ids:
            raise BenchmarkError(f"the continuation {continuation!r} encodes to no tokens")
        whole = (context_ids + continuation_ids)[-(max_length + 1) :]
        requests.append((whole[:-1], whole[-len(continuation_ids) :]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
    scores = [0.0] * len(requests)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(requests[i][0]) for i in batch)
            keep = max(len(requests[i][1]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                inputs = requests[i][0]
                ids[row, width - len(inputs) :] = torch.tensor(inputs)
                mask[row, width - len(inputs) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=keep,
            ).logits[:, -keep:]
            logprobs = logits.float().log_softmax(-1)
            for row, i in enumerate(batch):
                targets = requests[i][1]
                picked = logprobs[row, keep - len(targets) :].gather(-1, torch.tensor(targets, device=device)[:, None])
                scores[i] = float(picked.sum())
    finally:
        model.train(was_training)
    return scores


def score(
    model, tokenizer: PreTrainedTokenizerBase, items: list[Item], max_length: int, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, Any]:
    """accuracy and accuracy_norm of a model over the items, and each item's predicted choices."""
    pairs = [(item.context, TARGET_DELIMITER + choice) for item in items for choice in item.choices]
    flat = loglikelihoods(model, tokenizer, pairs, max_length, batch_size)
    predicted, predicted_norm, at = [], [], 0
    for item in items:
        lls = flat[at : at + len(item.choices)]
        at += len(item.choices)
        predicted.append(max(range(len(lls)), key=lambda c: lls[c]))
        normed = [ll / len(choice) for ll, choice in zip(lls, item.choices, strict=True)]
        predicted_norm.append(max(range(len(normed)), key=lambda c: normed[c]))
    right = sum(p == item.answer for p, item in zip(predicted, items, strict=True))
    right_norm = sum(p == item.answer for p, item in zip(predicted_norm, items, strict=True))
    return {
        "accuracy": right / len(items),
        "accuracy_norm": right_norm / len(items),
        "predicted": predicted,
        "predicted_norm": predicted_norm,
    }


def compare(name: str, total: int, base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    """One benchmark's entry in eval.json: accuracy of base and tuned, and the drop (base - tuned; above 0: the tuned
    model lost accuracy)."""
    items = len(base["predicted"])
    return {
        "name": name,
        "items": items,
        "of": total,
        "base_accuracy": base["accuracy"],
        "tuned_accuracy": tuned["accuracy"],
        "drop": base["accuracy"] - tuned["accuracy"],
        "base_accuracy_norm": base["accuracy_norm"],
        "tuned_accuracy_norm": tuned["accuracy_norm"],
        "drop_norm": base["accuracy_norm"] - tuned["accuracy_norm"],
    }
