"""Generation throughput of the evaluation job's answers (tuneyard_trainer.generate) on CPU, for a tiny model.

A random-initialised Llama shape built from a config (nothing downloaded; hidden 256, 6 layers, 8 heads, 4 KV heads)
and the trainer tests' byte-level BPE tokenizer (400 tokens, trained here) answer 64 chat prompts of 25-201 tokens,
greedy, max_new_tokens 64 (a random model rarely emits the stop token, so nearly every answer runs to 64
tokens: the figure is decode speed). Measured:
generate.generate at batch sizes 1, 8 and 32 (prompts sorted by length, left padding, KV cache), and, at batch 8, the
same batches through model.generate without the KV cache, to show what the cache is worth. One torch thread (two
threads on two shared cores measure the neighbours more than the code); medians of 3 runs (1 run without the cache:
it is slow).

    python benchmarks/generation_throughput.py            # a few minutes on 2 cores
    python benchmarks/generation_throughput.py --smoke    # seconds: the code path

Prints a markdown table of new tokens per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

TRAINER = Path(__file__).resolve().parents[1] / "training-images" / "trainer"
sys.path.insert(0, str(TRAINER))
sys.path.insert(0, str(TRAINER / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from conftest import WORDS, build_tokenizer  # noqa: E402  (the trainer tests' tokenizer: trained here, offline)
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM  # noqa: E402

from tuneyard_trainer import generate  # noqa: E402
from tuneyard_trainer.chat import stop_token_ids  # noqa: E402


def prompts(count: int, seed: int = 0) -> list[generate.Prompt]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = [rng.choice(WORDS)[0] for _ in range(rng.randint(2, 30))]
        text = "Translate to French: " + " and the ".join(words)
        rows.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "x"}]})
    return generate.prompts(rows, "chat")


def uncached(model, tokenizer, items, stops, max_new_tokens: int, batch_size: int) -> int:
    """The batches generate.generate makes, through model.generate with use_cache=False: new tokens generated."""
    encoded = [generate._prompt_ids(tokenizer, item) for item in items]
    order = sorted(range(len(items)), key=lambda i: -len(encoded[i]))
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
        use_cache=False,
    )
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            tokens += (out.shape[1] - width) * len(batch)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    count, new_tokens, repeats = (8, 8, 1) if args.smoke else (64, 64, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(Path(tmp))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=4, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    parameters = sum(p.numel() for p in model.parameters())
    items = prompts(count)
    lengths = [len(generate._prompt_ids(tokenizer, item)) for item in items]
    stops = stop_token_ids(tokenizer)

    setups = [(f"generate.generate, batch {b}", b, True) for b in (1, 8, 32)] + [("model.generate, batch 8, no KV cache", 8, False)]
    rows = []
    for name, batch, cached in setups:
        rates = []
        for _ in range(repeats if cached else 1):
            started = time.perf_counter()
            if cached:
                answers = generate.generate(model, tokenizer, items, stops, new_tokens, batch)
                tokens = sum(a.tokens for a in answers)
            else:
                tokens = uncached(model, tokenizer, items, stops, new_tokens, batch)
            rates.append(tokens / (time.perf_counter() - started))
        rows.append((name, tokens, statistics.median(rates), rates))

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, one thread; "
        f"Llama shape {parameters / 1e6:.1f}M parameters, vocab {len(tokenizer)}; {count} prompts of "
        f"{min(lengths)}-{max(lengths)} tokens (median {statistics.median(lengths):.0f}), max_new_tokens {new_tokens}, "
        f"greedy; medians of {repeats}\n"
    )
    print("| setup | new tokens | tokens/s (runs) | x batch 1 |")
    print("|---|---:|---:|---:|")
    base = rows[0][2]
    for name, tokens, rate, rates in rows:
        runs = ", ".join(f"{r:.0f}" for r in rates)
        print(f"| {name} | {tokens:,} | {rate:,.0f} ({runs}) | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
