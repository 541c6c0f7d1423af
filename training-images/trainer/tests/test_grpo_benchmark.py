"""benchmarks/grpo_throughput.py on its smoke model, in this process (a worker subprocess per setup would cost ~20 s of
imports each): both setups of GRPO and RLOO train their steps and report every field of the JSON and the table (no
timing is checked)."""

import json
import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import grpo_throughput as bench  # noqa: E402

FIELDS = {
    "setup", "method", "beta", "gradient_checkpointing", "weights", "stop_ids", "rewards", "steps", "seconds",
    "steps_per_second", "cpu_seconds", "steps_per_cpu_second", "completion_tokens", "completion_tokens_per_second",
    "tokens", "tokens_per_second",
    "mean_completion_length", "mean_reward", "peak_gpu_gib", "peak_rss_mib", "train_rss_growth_mib",
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo-bench")
    tokenizer = bench.make_tokenizer(root / "model", bench.SHAPES["smoke"]["vocab_size"])
    bench.make_model("smoke", root / "model", "float32")
    bench.make_reward_model("smoke", root / "reward-model", tokenizer, "float32")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in bench.make_prompts(4, len(tokenizer), 0)))
    return root


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_the_rl_throughput_benchmark_trains_both_setups_and_reports_every_field(fixtures, method):
    plan = {**bench.MODES["smoke"], "generations": 2, "batch": 2, "completion": 4}
    results = []
    for setup in plan["setups"]:
        spec = {
            "setup": setup, "method": method, "model_dir": str(fixtures / "model"),
            "reward_dir": str(fixtures / "reward-model"), "prompts": str(fixtures / "prompts.jsonl"),
            "generations": plan["generations"], "batch": plan["batch"], "completion": plan["completion"],
            "steps": plan["steps"], "warmup": plan["warmup"], "out": str(fixtures / f"{method}-{setup}"),
        }
        result = bench.worker(spec)
        assert FIELDS <= result.keys()
        json.dumps(result)  # what --json writes
        result.update(shape="smoke", params=1, repeat=0)
        results.append(result)
    tuneyard, trl = results
    for result in results:
        # both trained the steps after the warm-up one, generating and counting real tokens
        assert result["steps"] == plan["steps"] - plan["warmup"]
        assert 0 < result["completion_tokens"] <= result["tokens"]
        assert 0 < result["mean_completion_length"] <= plan["completion"]
        assert result["steps_per_second"] > 0 and result["peak_rss_mib"] > 0
    # the Tuneyard setup is the trainer's own build (its grader and, for GRPO, its KL penalty and length guard); the
    # baseline is TRL's defaults (GRPO: no KL term)
    if method == "grpo":
        assert tuneyard["rewards"] == ["grader_starts_with_7", "length_penalty"] and tuneyard["beta"] == 0.04
        assert trl["rewards"] == ["starts_with_7"] and trl["beta"] == 0.0
    else:
        assert tuneyard["beta"] == trl["beta"] == 0.05
    table = bench.summarize(results, plan, "smoke")
    assert f"| {method} | tuneyard |" in table and f"| {method} | trl-defaults |" in table
    assert "1.00x, 1.00x" in table and "steps/CPU-s" in table
