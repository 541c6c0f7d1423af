"""method=rloo: RLHF against a reward model trained in the test (a real method=reward job on separable pairs), with
TRL's RLOOTrainer in place of PPO (TRL 1.16 ships no PPO: see rloo.py), on the tiny random-init Llama of conftest."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from pathlib import Path

import pytest
import torch
from conftest import FAST, Job
from test_evaluate import check_fixture
from test_grpo import (
    CONTAINS_A,
    ONLINE_RL_FAST,
    add_reward_model_channel,
    metric_lines,
    planned_evaluation,
    prompt_rows,
    refuses_another_vocabulary,
    run_planned_evaluation,
)

from tuneyard_trainer import rloo
from tuneyard_trainer.config import ConfigError, from_hyperparameters
from tuneyard_trainer.metrics import METRICS

RLOO_FAST = {
    "method": "rloo",
    "reward_model": "tiny-reward",
    **ONLINE_RL_FAST,
    "rloo_num_generations": 8,
    "rloo_max_completion_length": 4,
    "rloo_temperature": 1.0,
}


def separable_pairs(base_model_dir: Path, count: int = 160) -> list[dict]:
    """Pairs a reward model learns to separate over the policy's own samples: random 1-4 token texts of the vocabulary,
    the chosen one holding the letter "a", the rejected one not (the GRPO toy task's signal, learnt from comparisons)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    special = set(tokenizer.all_special_ids)
    pieces = [tokenizer.decode([i]) for i in range(len(tokenizer)) if i not in special]
    pieces = [p for p in pieces if p.strip() and p.isprintable()]
    with_a, without_a = [p for p in pieces if "a" in p], [p for p in pieces if "a" not in p]
    rng = random.Random(0)
    prompts = [row.get("prompt") or row["messages"][-1]["content"] for row in prompt_rows()]
    pairs = []
    for i in range(count):
        rejected = [rng.choice(without_a) for _ in range(rng.randint(1, 4))]
        chosen = list(rejected)
        chosen[rng.randrange(len(chosen))] = rng.choice(with_a)
        pairs.append({"prompt": prompts[i % len(prompts)], "chosen": "".join(chosen), "rejected": "".join(rejected)})
    return pairs


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, base_model_dir) -> Path:
    """A reward job's real output (method=reward), trained on separable pairs."""
    job = Job(tmp_path_factory.mktemp("reward-for-rloo") / "ml", base_model_dir)
    job.configure(
        {**FAST, "method": "reward", "max_steps": 40, "per_device_train_batch_size": 8, "learning_rate": 2e-3},
        train=separable_pairs(base_model_dir),
    )
    # the score head is initialised when reward.py loads the model, before TRL's RewardTrainer seeds the RNG: from
    # the process's RNG, whose state depends on the tests that ran before in this process. Seeded here, the reward
    # model, what the RLHF adapter learns against it and the eval.json committed from that do not depend on test order.
    torch.manual_seed(0)
    assert job.run() == 0, job.failure
    return job.model_dir


@pytest.fixture(scope="module")
def rlhf_run(tmp_path_factory, base_model_dir, reward_model) -> tuple[Job, list[dict[str, float]], str]:
    job = Job(tmp_path_factory.mktemp("rloo") / "ml", base_model_dir)
    add_reward_model_channel(job, reward_model)
    job.configure(
        {**RLOO_FAST, "max_steps": 30, "learning_rate": 1e-2, "rloo_beta": 0.1, "lora_modules_to_save": "lm_head"},
        train=prompt_rows(),
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = job.run()
    assert code == 0, job.failure
    return job, metric_lines(out.getvalue()), out.getvalue()


def test_rlhf_against_the_reward_model_raises_the_reward_with_bounded_kl(rlhf_run):
    job, lines, _ = rlhf_run
    assert len(lines) == 30
    first = sum(line["reward_mean"] for line in lines[:5]) / 5
    last = sum(line["reward_mean"] for line in lines[-5:]) / 5
    kls = [line["kl"] for line in lines]
    print(
        f"RLOO against the trained reward model: reward {first:.3f} over the first 5 steps, {last:.3f} over the last "
        f"5; KL {kls[0]:.3f} at step 1, {max(kls):.3f} at most, {kls[-1]:.3f} at the end"
    )
    spread = max(line["reward_mean"] for line in lines) - min(line["reward_mean"] for line in lines)
    assert last > first + 0.25 * spread, (first, last, spread)
    # RLOO's KL is the sampled completions' summed log-ratio to the reference (an estimate: it can dip below 0)
    # bounded: the penalty holds the policy near the base (summed over at most 4 tokens: under 2 nats a token)
    assert all(-0.5 < kl < 8 for kl in kls), kls
    assert kls[-1] > kls[0]  # the policy did move away from the reference
    for line in lines:
        assert {"policy_loss", "kl", "completion_length", "clip_fraction", "reward_std", "reward_model"} <= line.keys()
        assert 0 < line["completion_length"] <= 4
        assert 0 <= line["clip_fraction"] <= 1
        assert line["reward_mean"] == pytest.approx(line["reward_model"], rel=1e-4)


def test_the_adapter_is_written_and_loads(rlhf_run, base_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    job, _, stdout = rlhf_run
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["config"]["method"] == "rloo"
    assert written["rewards"] == {"sources": {"reward_model": 1.0}, "algorithm": "rloo"}
    assert written["dataset"]["train_rows"] == 20
    assert (job.model_dir / "adapter.tar.gz").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model_dir), job.model_dir / "adapter")
    assert any("lora_" in name for name, _ in model.named_parameters())
    # every RLOO MetricDefinition (metrics.json) captures a number per step from the run's stdout
    definitions = json.loads((Path(rloo.__file__).parents[1] / "metrics.json").read_text())
    for definition in [d for d in definitions if METRICS[d["Name"]].startswith("RLOO:")]:
        assert len(re.findall(definition["Regex"], stdout)) == 30, definition


def test_the_eval_job_scores_the_rlhf_adapter_on_what_its_reward_model_learnt(make_job, rlhf_run, reward_model):
    """The evaluation job PlanRun plans for an rloo request that names the grader has_a (the signal the reward model
    learnt from its pairs; rloo's graders only evaluate) scores the RLHF adapter's greedy answers, base and tuned, in the
    eval.json the gate reads (committed as eval-report-rloo.json for the pipeline's ReadEvalReport test)."""
    trained, _, _ = rlhf_run
    planned = planned_evaluation("rloo")
    assert json.loads(planned["gradersFile"]) == [CONTAINS_A]
    assert planned["evaluationHyperParameters"]["max_new_tokens"] == str(RLOO_FAST["rloo_max_completion_length"])
    # the reward model that trained the adapter scores its answers in the evaluation job too
    assert "reward_model" in planned["evaluationChannels"]
    report = run_planned_evaluation(make_job, trained, planned, "evaluate-rloo", reward_model)
    graders = report["graders"]
    base, tuned = graders["base"]["has_a"]["mean"], graders["tuned"]["has_a"]["mean"]
    print(
        f"eval job on the RLOO adapter, grader has_a over 20 prompts: base {base:.2f}, tuned {tuned:.2f}; "
        f"eval_loss_ratio {report['eval_loss_ratio']:.3f}"
    )
    assert report["generation"]["identical_answers"] < report["generation"]["items"]  # the adapter answers otherwise
    assert tuned > base, (base, tuned)
    assert tuned >= planned["thresholds"]["minGraderMean"]["has_a"]  # the planned gate passes it
    assert graders["tuned"]["has_a"]["graded"] == 20 and report.get("preference") is None
    # what the run optimised: the reward model's score of the greedy answers rose (the gate's default minRewardGain 0)
    reward = report["reward"]
    print(
        f"eval job, the reward model's mean score of the answers: base {reward['base']['mean']:.3f}, tuned "
        f"{reward['tuned']['mean']:.3f}, gain {reward['gain']:.3f}"
    )
    assert reward["sources"] == {"reward_model": 1.0} and reward["rows"] == 20
    for side in ("base", "tuned"):
        assert reward[side]["by_source"] == {"reward_model": pytest.approx(reward[side]["mean"])}
    assert reward["gain"] == pytest.approx(reward["tuned"]["mean"] - reward["base"]["mean"])
    assert reward["gain"] > 0 and reward["gain"] >= planned["thresholds"]["minRewardGain"]
    check_fixture("eval-report-rloo.json", report)


def test_the_reference_is_the_base_with_the_adapter_disabled(job, reward_model):
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    add_reward_model_channel(job, reward_model)
    job.configure({**RLOO_FAST, "rloo_beta": 0.1}, train=prompt_rows())
    env = SageMakerEnv(job.root)
    inputs, tokenizer = rloo.read_inputs(env)
    trainer = rloo.build_trainer(inputs, env, tokenizer, [])
    assert trainer.beta == 0.1 and trainer.ref_model is None  # no second copy: the adapter is disabled for the KL


@pytest.mark.parametrize(
    "hyperparameters, channel, message",
    [
        ({"reward_model": None}, False, "method=rloo needs reward_model"),
        ({}, False, "the job has no reward_model channel"),
        ({"per_device_train_batch_size": 6}, True, "multiple of rloo_num_generations"),
        ({"max_length": 16, "rloo_max_completion_length": 4}, True,
         "every prompt of the train channel is longer than max_length - rloo_max_completion_length = 12 tokens"),
        ({}, True, "invalid row(s) in train.jsonl for method=rloo"),
    ],
)
def test_bad_configs_fail_before_weights_load(job, monkeypatch, reward_model, hyperparameters, channel, message):
    monkeypatch.setattr("tuneyard_trainer.train.load_model", lambda *a, **k: pytest.fail("weights loaded"))
    if channel:
        add_reward_model_channel(job, reward_model)
    config = {k: v for k, v in {**RLOO_FAST, **hyperparameters}.items() if v is not None}
    rows = [{"text": "no prompt"}] if "invalid row" in message else prompt_rows()
    job.configure(config, train=rows)
    assert job.run() != 0
    assert message in job.failure, job.failure


def test_a_reward_model_with_another_vocabulary_is_refused(job, tmp_path, monkeypatch):
    refuses_another_vocabulary(job, tmp_path, monkeypatch, RLOO_FAST)


def test_rloo_fields_are_refused_for_other_methods():
    with pytest.raises(ConfigError, match="rloo_beta applies to method rloo only"):
        from_hyperparameters({"method": "grpo", "base_model": "x", "rloo_beta": "0.1"})
    with pytest.raises(ConfigError, match="method=rloo runs with distribution none or ddp"):
        from_hyperparameters({"method": "rloo", "base_model": "x", "distribution": "fsdp"})
