"""Answers of the base and the tuned model to the eval prompts (for graders, a judge and people to read): greedy by
default, batched with left padding, prompts sorted by length so a batch pads little, each answer cut at the run's stop
tokens (chat.stop_token_ids: the end-of-turn token, then eos).

What makes it fast on a GPU: one `generate` call per batch of up to `batch_size` prompts (the GPU works on the whole
batch each step), the KV cache (each step runs only the new token through the model), the model's attention
implementation (sdpa by default in transformers), prompts of similar length in one batch (little padding), and a batch
that stops as soon as all of its answers have stopped. vLLM (continuous batching, paged attention) is not in the image.
benchmarks/generation_throughput.py measures it (CPU figures in benchmarks/RESULTS.md; not yet measured on a GPU)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from .data import PREFERENCE_FORMATS, render_dpo, render_sft

DEFAULT_MAX_GENERATIONS = 200
DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_BATCH_SIZE = 16
GENERATIONS_FILE = "generations.jsonl"


@dataclass(frozen=True)
class Prompt:
    """One eval row as a prompt: the conversation up to its last assistant turn, and that turn (the reference)."""

    index: int  # the row's position in the eval file (0-based)
    messages: list[dict[str, Any]]
    reference: str
    tools: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int  # new tokens generated, the stop token included
    stopped: bool  # ended on a stop token (else it ran to max_new_tokens)


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    calls = message.get("tool_calls")
    return json.dumps(calls, ensure_ascii=False) if calls else ""


def prompts(rows: list[dict[str, Any]], fmt: str) -> list[Prompt]:
    """The prompts of eval rows (data.validate_file's internal form): a chat row's conversation before its last
    assistant message, a prompt-completion or alpaca row's prompt, a preference row's prompt (its chosen response is the
    reference). `text` rows have no prompt: []."""
    if fmt == "text":
        return []
    if fmt in PREFERENCE_FORMATS:
        conversations = [
            {"messages": pair["prompt"] + pair["chosen"], **({"tools": pair["tools"]} if pair.get("tools") else {})}
            for pair in render_dpo(rows, fmt)
        ]
    else:
        conversations = render_sft(rows, fmt)
    result = []
    for index, conversation in enumerate(conversations):
        messages = conversation["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            continue  # nothing to answer, or nothing to answer it from
        plain = [{k: v for k, v in m.items() if k != "weight"} for m in messages[:last]]
        result.append(Prompt(index, plain, _content(messages[last]), conversation.get("tools")))
    return result


def _prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        prompt.messages, tools=prompt.tools or None, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


@torch.inference_mode()
def generate(
    model,
    tokenizer: PreTrainedTokenizerBase,
    items: list[Prompt],
    stop_ids: list[int],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Answer]:
    """Greedy answers to the prompts, in their order. Prompts are encoded with the chat template (generation prompt
    added), sorted longest first (a batch that runs out of memory does so at once) and batched with left padding, so
    every answer starts at the same column; the attention mask keeps the padding out (transformers derives the
    positions from it). An answer ends before its first stop token."""
    if not stop_ids:
        raise ValueError("generation needs at least one stop token id (chat.stop_token_ids found none)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(stop_ids), pad_token_id=pad, use_cache=True
    )
    encoded = [_prompt_ids(tokenizer, item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    answers: list[Answer | None] = [None] * len(items)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config)
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                end = next((t for t, token in enumerate(new) if token in stop_ids), None)
                kept = new if end is None else new[:end]
                text = tokenizer.decode(kept, skip_special_tokens=True)
                answers[i] = Answer(text, len(new) if end is None else end + 1, end is not None)
    finally:
        model.train(was_training)
    return [answer for answer in answers if answer is not None]


def timed(model, tokenizer, items: list[Prompt], stop_ids: list[int], max_new_tokens: int, batch_size: int):
    """generate() and its summary: answers, the mean tokens per answer, how many stopped, tokens per second."""
    started = time.perf_counter()
    answers = generate(model, tokenizer, items, stop_ids, max_new_tokens, batch_size)
    seconds = time.perf_counter() - started
    tokens = sum(a.tokens for a in answers)
    summary = {
        "tokens": tokens,
        "mean_tokens": tokens / len(answers) if answers else 0.0,
        "stopped": sum(a.stopped for a in answers),
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
    }
    return answers, summary


def write_generations(
    path: Path,
    items: list[Prompt],
    base: list[Answer],
    tuned: list[Answer],
    scores: dict[str, dict[str, list[float | None]]] | None = None,
) -> None:
    """generations.jsonl: one row per prompt with the reference and both answers (tokens: new tokens generated, the
    stop token included; stopped: false when the answer ran to max_new_tokens) and, when the run has graders, each
    answer's score by each grader (`scores`: side -> grader -> one score per prompt; None: not gradable)."""
    lines = []
    scores = scores or {}
    for at, (item, b, t) in enumerate(zip(items, base, tuned, strict=True)):
        row = {
            "index": item.index,
            "prompt": item.messages,
            **({"tools": item.tools} if item.tools else {}),
            "reference": item.reference,
            "base": b.text,
            "tuned": t.text,
            "base_tokens": b.tokens,
            "tuned_tokens": t.tokens,
            "base_stopped": b.stopped,
            "tuned_stopped": t.stopped,
            # a grader that did not run (graders.grade_rows: "unavailable") has no scores: no entry, not a row's None
            **{f"{side}_scores": {name: values[at] for name, values in by_grader.items() if values} for side, by_grader in scores.items()},
        }
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
