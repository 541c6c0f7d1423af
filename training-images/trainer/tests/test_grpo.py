"""method=grpo: online RL with graders, a reward model or both as rewards, on the tiny random-init Llama of conftest.

The toy task is verifiable and learnable by a 2-layer model with a 400-token vocabulary: a regex grader rewards a
completion that contains the letter "a" (about a third of the random model's 4-token samples do)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO_ROOT, WORDS, Job, build_model, build_tokenizer, dpo_rows, sft_rows
from test_evaluate import check_fixture

from tuneyard_trainer import graders as graders_module
from tuneyard_trainer import grpo
from tuneyard_trainer.config import ConfigError, from_hyperparameters
from tuneyard_trainer.metrics import METRICS, PREFIX

CONTAINS_A = {"type": "regex", "name": "has_a", "input": "{{ sample.output_text }}", "pattern": "a"}
# The evaluation jobs PlanRun plans for grpo and rloo requests (written by the pipeline's TypeScript test).
RL_EVAL_JOBS = REPO_ROOT / "test" / "fixtures" / "contracts" / "rl-eval-jobs.json"
MENTIONS_REFERENCE = {
    "type": "string_check", "name": "says_ref", "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference }}", "operation": "ilike",
}

# what the online RL methods' toy runs share: one group of 8 completions of up to 4 tokens a step, a small adapter
ONLINE_RL_FAST = {
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "save_steps": 1000,
    "warmup_ratio": 0,
    "lr_scheduler_type": "constant",
    "gradient_checkpointing": False,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0,
}

GRPO_FAST = {
    "method": "grpo",
    **ONLINE_RL_FAST,
    "grpo_num_generations": 8,
    "grpo_max_completion_length": 4,
    "grpo_temperature": 1.0,
}


def prompt_rows() -> list[dict]:
    """Prompt-only rows of both kinds: chats ending with the user's turn and plain prompts, with a reference field."""
    rows = []
    for i, (en, fr) in enumerate(WORDS):
        if i % 2:
            rows.append({"messages": [{"role": "user", "content": f"Translate to French: {en}"}], "reference": fr})
        else:
            rows.append({"prompt": f"Translate to French: {en}", "reference": fr})
    return rows


def metric_lines(stdout: str) -> list[dict[str, float]]:
    lines = []
    for line in stdout.splitlines():
        if line.startswith(PREFIX):
            fields = dict(part.split("=", 1) for part in line.removeprefix(PREFIX).split())
            lines.append({k: float(v) for k, v in fields.items()})
    return [line for line in lines if "reward_mean" in line]


def run_job(job: Job, capsys, hyperparameters: dict, rows: list[dict] | None = None) -> list[dict[str, float]]:
    job.configure(hyperparameters, train=rows or prompt_rows())
    capsys.readouterr()
    code = job.run()
    out = capsys.readouterr().out
    assert code == 0, (job.failure, out[-3000:])
    return metric_lines(out)


def build_reward_model(folder: Path, tokenizer_source: Path | None = None, seed: int = 1) -> Path:
    """A tiny Llama sequence-classification model with one score, saved with its tokenizer (the policy's by default):
    the reward model of another tokenizer family."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source) if tokenizer_source else build_tokenizer(folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id, num_labels=1,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder


def add_reward_model_channel(job: Job, folder: Path) -> None:
    channel = job.root / "input" / "data" / "reward_model"
    channel.parent.mkdir(parents=True, exist_ok=True)
    channel.symlink_to(folder, target_is_directory=True)


@pytest.fixture(scope="module")
def reward_job_model(tmp_path_factory, base_model_dir) -> Path:
    """A reward job's real output (method=reward, 2 steps): model/ with full/ (the merged sequence-classification
    model and tokenizer), adapter/ and training_config.json, as the registry hands it to the reward_model channel."""
    job = Job(tmp_path_factory.mktemp("reward-job") / "ml", base_model_dir)
    job.configure({**FAST, "method": "reward", "max_steps": 2, "learning_rate": 1e-3}, train=dpo_rows())
    assert job.run() == 0, job.failure
    assert (job.model_dir / "full" / "config.json").is_file()
    return job.model_dir


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, base_model_dir) -> tuple[Job, list[dict[str, float]]]:
    """30 GRPO steps on the toy task: the job and its metric lines."""
    job = Job(tmp_path_factory.mktemp("grpo-toy") / "ml", base_model_dir)
    job.configure(
        {
            **GRPO_FAST, "graders": json.dumps([CONTAINS_A]), "max_steps": 30, "learning_rate": 1e-2, "grpo_beta": 0.04,
            # the output head trained whole beside the adapter (PEFT modules_to_save): the tiny model learns the task
            # in a few dozen steps; the reference keeps the base head
            "lora_modules_to_save": "lm_head", "grpo_length_guard": "none",
        },
        train=prompt_rows(),
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = job.run()
    assert code == 0, job.failure
    return job, metric_lines(out.getvalue())


def test_grpo_with_a_grader_raises_the_reward_and_keeps_kl_bounded(toy_run):
    job, lines = toy_run
    assert len(lines) == 30
    first = sum(line["reward_grader_has_a"] for line in lines[:5]) / 5
    last = sum(line["reward_grader_has_a"] for line in lines[-5:]) / 5
    print(
        f"GRPO toy task: reward {first:.3f} over the first 5 steps, {last:.3f} over the last 5; KL "
        f"{lines[0]['kl']:.3f} at step 1, {max(line['kl'] for line in lines):.3f} at most, {lines[-1]['kl']:.3f} at the end"
    )
    assert last >= first + 0.3, (first, last)
    assert last >= 0.7
    kls = [line["kl"] for line in lines]
    assert all(0 <= kl < 5 for kl in kls), kls  # bounded: the penalty holds the policy near the base
    assert kls[-1] > kls[0]  # the policy did move away from the reference
    for line in lines:
        assert {"train_loss", "kl", "completion_length", "clipped_ratio", "reward_std"} <= line.keys()
        assert 0 < line["completion_length"] <= 4
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["config"]["method"] == "grpo"
    assert written["rewards"]["sources"] == {"has_a": 1.0}
    assert written["dataset"] == {"format": "prompt", "train_rows": 20, "eval_channel": False, "overlong_rows": {"train": 0}}
    assert (job.model_dir / "adapter" / "adapter_config.json").is_file()
    assert (job.model_dir / "adapter.tar.gz").is_file()


def planned_evaluation(method: str) -> dict:
    """The evaluation job PlanRun plans for a `method` request whose graders and thresholds suit the toy task
    (test/fixtures/contracts/rl-eval-jobs.json, which constructs/fine-tuning-pipeline/handler/read-eval-report-rl.test.ts
    writes from the real planRun and whose gate test reads the eval.json this job writes)."""
    cases = json.loads(RL_EVAL_JOBS.read_text(encoding="utf-8"))["cases"]
    return next(case for case in cases if case["request"]["recipe"]["method"] == method)


def run_planned_evaluation(make_job, trained: Job, planned: dict, name: str, reward_model: Path | None = None) -> dict:
    """Runs `evaluate` on a training job's output as PlanRun plans the evaluation job: its hyperparameters, its
    graders channel (the graders.json PlanRun writes), its reward_model channel (`reward_model`: the reward job's
    model output the training job read) and no other channel than the plan's; returns eval.json."""
    job = make_job(name).configure(planned["evaluationHyperParameters"], eval=sft_rows())
    (job.root / "input" / "data" / "adapter").symlink_to(trained.model_dir, target_is_directory=True)
    if planned["gradersFile"] is not None:
        folder = job.root / "input" / "data" / "graders"
        folder.mkdir(parents=True)
        (folder / "graders.json").write_text(planned["gradersFile"], encoding="utf-8")
    if "reward_model" in planned["evaluationChannels"]:
        assert reward_model is not None, "the plan gives the evaluation job the run's reward model: pass it"
        add_reward_model_channel(job, reward_model)
    channels = sorted(path.name for path in (job.root / "input" / "data").iterdir())
    assert channels == sorted(planned["evaluationChannels"]), (channels, planned["evaluationChannels"])
    assert job.run("evaluate") == 0, job.failure
    return json.loads((job.model_dir / "eval.json").read_text())


def test_the_grader_that_trained_the_model_scores_it_in_the_eval_job(make_job, toy_run):
    """What gates a model can train it: the evaluation job PlanRun plans for a grpo request rewarded by has_a (its
    graders channel holds the same definition) scores the GRPO adapter's greedy answers above the base model's, in the
    eval.json the gate reads (committed as eval-report-grpo.json for the pipeline's ReadEvalReport test)."""
    trained, _ = toy_run
    planned = planned_evaluation("grpo")
    assert json.loads(planned["gradersFile"]) == [CONTAINS_A]  # the grader the toy run trained with
    # answers as long as the completions it trained on (evaluation.maxNewTokens = recipe.grpoMaxCompletionLength)
    assert planned["evaluationHyperParameters"]["max_new_tokens"] == str(GRPO_FAST["grpo_max_completion_length"])
    report = run_planned_evaluation(make_job, trained, planned, "evaluate-grpo")
    graders = report["graders"]
    base, tuned = graders["base"]["has_a"]["mean"], graders["tuned"]["has_a"]["mean"]
    print(
        f"eval job, grader has_a over 20 prompts: base {base:.2f}, GRPO-tuned {tuned:.2f}; "
        f"eval_loss_ratio {report['eval_loss_ratio']:.3f} (reference answers, which GRPO does not train on)"
    )
    assert tuned >= base + 0.3 and tuned >= 0.7, (base, tuned)
    assert tuned >= planned["thresholds"]["minGraderMean"]["has_a"]  # the planned gate passes it
    assert graders["tuned"]["has_a"]["graded"] == 20 and graders["tuned"]["has_a"]["error_count"] == 0
    # the run's own reward of the same answers: has_a, weight 1, no format guard, so its means are the grader's
    reward = report["reward"]
    print(
        f"eval job, the run's reward: base {reward['base']['mean']:.3f}, tuned {reward['tuned']['mean']:.3f}, "
        f"gain {reward['gain']:.3f}"
    )
    assert reward["sources"] == {"has_a": 1.0} and reward["rows"] == 20 and reward["format_regex"] is None
    for side, mean in (("base", base), ("tuned", tuned)):
        expected = {"mean": pytest.approx(mean), "by_source": {"has_a": pytest.approx(mean)}, "format_misses": 0}
        assert reward[side] == expected
    assert reward["gain"] == pytest.approx(tuned - base) and reward["gain"] > 0
    assert reward["gain"] >= planned["thresholds"]["minRewardGain"]  # the planned default gate passes it
    check_fixture("eval-report-grpo.json", report)


def test_the_eval_reward_is_the_training_reward_weighted_with_the_format_guard():
    """evaluate.online_reward scores answers with the training job's reward functions: each source's reward, weighted;
    a format miss scores 0 from every source (here "Chat!" holds an "a" and its reference, but misses [a-z ]*)."""
    from tuneyard_trainer import evaluate, generate

    sources = evaluate.RewardSources(
        graders_module.load([CONTAINS_A, MENTIONS_REFERENCE]), None, {"has_a": 2.0, "says_ref": 0.5}, "[a-z ]*"
    )
    references = ["chat", "chien", "oiseau"]
    prompts = [generate.Prompt(i, [{"role": "user", "content": f"q{i}"}], ref) for i, ref in enumerate(references)]
    items = [{"messages": p.messages, "reference": p.reference} for p in prompts]
    said = {
        "base": ["x", "Chat!", "oiseau"],  # 0, a format miss, both sources: 0, 0, 2.5
        "tuned": ["a chat", "chien a", "oiseau"],  # both sources each: 2.5
    }
    answers = {side: [generate.Answer(text, 2, True) for text in texts] for side, texts in said.items()}
    block = evaluate.online_reward(sources, None, prompts, items, answers, batch_size=2)
    assert block["sources"] == {"has_a": 2.0, "says_ref": 0.5} and block["format_regex"] == "[a-z ]*"
    assert block["rows"] == 3
    assert block["base"] == {
        "mean": pytest.approx(2.5 / 3), "by_source": {"has_a": pytest.approx(1 / 3), "says_ref": pytest.approx(1 / 3)},
        "format_misses": 1,
    }
    tuned = {"mean": pytest.approx(2.5), "by_source": {"has_a": 1.0, "says_ref": 1.0}, "format_misses": 0}
    assert block["tuned"] == tuned
    assert block["gain"] == pytest.approx(2.5 - 2.5 / 3)


@pytest.mark.parametrize(
    "method, recorded, hyperparameters, channels, message",
    [
        ("grpo", {"has_a": 1.0}, {"reward_weights": json.dumps({"has_a": 2})}, ["graders"],
         'the training job (method=grpo) was rewarded by {"has_a": 1.0} (training_config.json rewards.sources), but '
         'this evaluation job\'s reward would be {"has_a": 2.0}'),
        ("grpo", {"has_a": 1.0}, {}, [], "this evaluation job's reward would be {}"),
        ("rloo", {"reward_model": 1.0}, {}, ["graders"], "this evaluation job's reward would be {}"),
        ("rloo", None, {}, [], "method=rloo: the evaluation scores the answers with the run's reward, but the job has "
         "neither graders (the graders channel) nor a reward model (the reward_model channel)"),
        ("rloo", {"reward_model": 1.0}, {"max_generations": 0}, ["reward_model"],
         "hyperparameter max_generations is 0, but the evaluation of a rloo run scores the generated answers with the "
         "run's reward"),
    ],
)
def test_the_eval_job_refuses_a_reward_that_is_not_the_training_job_s_before_weights_load(
    make_job, tmp_path, monkeypatch, method, recorded, hyperparameters, channels, message
):
    """The reward gain must measure what the run optimised: the evaluation job's reward sources and weights (its
    graders channel, reward_model channel and reward_weights) are those training_config.json records, or it fails."""
    job = make_job("evaluate").configure(hyperparameters, eval=sft_rows())
    adapter = job.root / "input" / "data" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    rewards = {} if recorded is None else {"rewards": {"sources": recorded}}
    (adapter / "training_config.json").write_text(json.dumps({"config": {"method": method}, **rewards}))
    if "graders" in channels:
        (job.root / "input" / "data" / "graders").mkdir()
        (job.root / "input" / "data" / "graders" / "graders.json").write_text(json.dumps([CONTAINS_A]))
    if "reward_model" in channels:
        add_reward_model_channel(job, build_reward_model(tmp_path / "reward-model"))
    monkeypatch.setattr(
        "transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: pytest.fail("weights loaded")
    )
    assert job.run("evaluate") == 1
    assert message in job.failure, job.failure


def test_the_reference_is_the_base_with_the_adapter_disabled(job, base_model_dir):
    """No second copy of the weights: with a LoRA adapter and beta > 0 TRL holds no ref_model, and the reference
    log-probabilities are the base model's (the adapter disabled)."""
    from transformers import AutoModelForCausalLM

    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    job.configure({**GRPO_FAST, "graders": json.dumps([CONTAINS_A]), "grpo_beta": 0.1}, train=prompt_rows())
    env = SageMakerEnv(job.root)
    inputs, tokenizer = grpo.read_inputs(env)
    trainer, _ = grpo.build_trainer(inputs, env, tokenizer, [])
    assert trainer.beta == 0.1
    assert trainer.ref_model is None
    model = trainer.model
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # an adapter that changes the outputs
    ids = torch.tensor([tokenizer("Translate to French: cat")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    model.eval()
    with torch.no_grad():
        with model.disable_adapter():
            disabled = model(input_ids=ids).logits
        adapted = model(input_ids=ids).logits
        expected = base(input_ids=ids).logits
    torch.testing.assert_close(disabled, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(adapted, expected, atol=1e-3)


def test_a_reward_model_rewards_the_completions(job, capsys, reward_job_model):
    add_reward_model_channel(job, reward_job_model)
    reward_model_dir = reward_job_model / "full"
    lines = run_job(
        job, capsys,
        {**GRPO_FAST, "reward_model": "tiny-reward", "max_steps": 3, "learning_rate": 1e-2, "grpo_length_guard": "none"},
    )
    assert len(lines) == 3
    for line in lines:
        assert line["reward_model"] != 0 and line["reward_mean"] == pytest.approx(line["reward_model"], rel=1e-4)
    assert len({line["reward_model"] for line in lines}) > 1  # scores of different completions, not a constant
    # the same scores the model gives these texts outside the trainer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    scorer = grpo.ModelReward(reward_model_dir, tokenizer, grpo.Guards(4, set(), None), torch.float32)
    prompt = [{"role": "user", "content": "Translate to French: cat"}]
    scores = scorer([prompt, prompt], [[{"role": "assistant", "content": "chat"}], [{"role": "assistant", "content": "x"}]])
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir).eval()
    text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "chat"}], tokenize=False)
    with torch.no_grad():
        alone = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    assert scores[0] == pytest.approx(alone, abs=1e-4)
    assert scores[0] != scores[1]


def test_a_weighted_mix_sums_the_weighted_rewards(job, capsys, reward_job_model):
    """Graders and the reward model, weighted, with both guards on: the logged total is the weighted sum of the logged
    per-source means, and every GRPO MetricDefinition (metrics.json) captures a number from the run's stdout."""
    add_reward_model_channel(job, reward_job_model)
    weights = {"has_a": 2.0, "says_ref": 0.5, "reward_model": -3.0}
    job.configure(
        {
            **GRPO_FAST, "graders": json.dumps([CONTAINS_A, MENTIONS_REFERENCE]), "reward_model": "tiny-reward",
            "reward_weights": json.dumps(weights), "max_steps": 3, "learning_rate": 1e-2,
            "grpo_max_completion_length": 3, "grpo_length_penalty": 0.25, "grpo_format_regex": "[a-z ]*",
        },
        train=prompt_rows(),
    )
    capsys.readouterr()
    assert job.run() == 0, job.failure
    stdout = capsys.readouterr().out
    lines = metric_lines(stdout)
    assert len(lines) == 3
    for line in lines:
        total = (
            2.0 * line["reward_grader_has_a"] + 0.5 * line["reward_grader_says_ref"] - 3.0 * line["reward_model"]
            + 0.25 * line["reward_length_penalty"]
        )
        assert line["reward_mean"] == pytest.approx(total, abs=1e-4)
    assert json.loads((job.model_dir / "training_config.json").read_text())["rewards"]["sources"] == weights
    definitions = json.loads((Path(grpo.__file__).parents[1] / "metrics.json").read_text())
    grpo_names = [d for d in definitions if METRICS[d["Name"]].startswith(("GRPO:", "GRPO and RLOO:"))]
    assert len(grpo_names) == 8
    for definition in grpo_names:
        captured = re.findall(definition["Regex"], stdout)
        assert len(captured) == 3, definition
        assert all(float(c) == float(c) for c in captured)


def test_the_length_guard_penalises_clipped_completions(job, capsys):
    # 2 new tokens at most: nearly every completion of the random model runs out before its end-of-turn token
    lines = run_job(
        job, capsys,
        {**GRPO_FAST, "graders": json.dumps([CONTAINS_A]), "grpo_max_completion_length": 2, "max_steps": 2,
         "grpo_length_penalty": 0.5, "learning_rate": 1e-3},
    )
    for line in lines:
        assert line["clipped_ratio"] > 0.5
        assert line["reward_length_penalty"] == pytest.approx(-line["clipped_ratio"], abs=1e-4)
        total = line["reward_grader_has_a"] + 0.5 * line["reward_length_penalty"]
        assert line["reward_mean"] == pytest.approx(total, abs=1e-4)


def test_prompts_without_room_for_a_completion_are_dropped_and_counted(base_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    long = {"prompt": " ".join(["Translate to French: cat"] * 40)}
    rows = [*prompt_rows()[:3], long]
    budget = max(grpo.prompt_tokens(tokenizer, grpo.prompt_of(r, True)) for r in rows[:3])
    assert grpo.prompt_tokens(tokenizer, grpo.prompt_of(long, True)) > budget
    kept, dropped = grpo.fit_prompts(rows, tokenizer, budget)
    assert kept == rows[:3] and dropped == 1


def test_guards_clip_and_format():
    guards = grpo.Guards(3, {7}, re.compile(r"[a-z]+", re.DOTALL))
    assert guards.clipped([1, 2, 3]) and guards.clipped([1, 2, 3, 4])
    assert not guards.clipped([1, 2, 7]) and not guards.clipped([1, 2])
    reward = grpo.GraderReward(graders_module.load([CONTAINS_A])[0], [{"prompt": "p"}] * 3, guards)
    scores = reward(["p"] * 3, ["banana", "Banana!", "xyz"], tuneyard_row=[0, 1, 2])
    assert scores == [1.0, 0.0, 0.0]  # "Banana!" has an "a" but misses the format: 0
    assert guards.take_format_miss_ratio() == pytest.approx(1 / 3)
    penalty = grpo.LengthPenalty(guards)
    assert penalty(["p"] * 2, ["abc", "ab"], completion_ids=[[1, 2, 3], [1, 7]]) == [-1.0, 0.0]


def test_a_format_miss_gets_zero(job, capsys):
    # the format only a completion of letters and spaces passes: the random model's samples mostly miss it
    lines = run_job(
        job, capsys,
        {**GRPO_FAST, "graders": json.dumps([CONTAINS_A]), "grpo_format_regex": "[a-z ]*", "max_steps": 2,
         "learning_rate": 1e-3, "grpo_length_guard": "none"},
    )
    for line in lines:
        assert 0 < line["format_miss_ratio"] <= 1
        assert line["reward_grader_has_a"] <= 1 - line["format_miss_ratio"] + 1e-6


@pytest.mark.parametrize(
    "hyperparameters, rows, message",
    [
        ({}, None, "method=grpo needs a reward source"),
        ({"graders": json.dumps([{**CONTAINS_A, "type": "regx"}])}, None, "regex"),
        ({"graders": json.dumps([CONTAINS_A]), "reward_weights": json.dumps({"has_b": 1})}, None,
         'reward_weights names "has_b", which is not a reward source of this run; did you mean "has_a"?'),
        ({"graders": json.dumps([CONTAINS_A]), "per_device_train_batch_size": 6}, None, "multiple of grpo_num_generations"),
        ({"graders": json.dumps([CONTAINS_A])}, [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
         "must end with a user message"),
        ({"graders": json.dumps([CONTAINS_A])}, [{"text": "no prompt"}], 'has neither "messages"'),
        ({"reward_model": "tiny-reward"}, None, "the job has no reward_model channel"),
        ({"graders": json.dumps([CONTAINS_A]), "grpo_format_regex": "(["}, None, "grpo_format_regex is not a Python regular expression"),
        ({"graders": json.dumps([CONTAINS_A]), "max_length": 16, "grpo_max_completion_length": 4}, None,
         "every prompt of the train channel is longer than max_length - grpo_max_completion_length = 12 tokens"),
    ],
)
def test_bad_configs_fail_before_weights_load(job, monkeypatch, hyperparameters, rows, message):
    loaded = []
    monkeypatch.setattr("tuneyard_trainer.train.load_model", lambda *a, **k: loaded.append(a) or pytest.fail("loaded"))
    job.configure({**GRPO_FAST, **hyperparameters}, train=rows or prompt_rows())
    assert job.run() != 0
    assert message in job.failure, job.failure
    assert not loaded


def test_the_graders_channel_is_read_like_the_eval_job_s(job):
    """PlanRun passes graders as a channel (graders.json): GRPO reads it with the eval job's reader (evaluate.run_graders)."""
    from tuneyard_trainer.sagemaker_env import SageMakerEnv

    job.configure({**GRPO_FAST}, train=prompt_rows())
    channel = job.root / "input" / "data" / "graders"
    channel.mkdir(parents=True)
    (channel / "graders.json").write_text(json.dumps([CONTAINS_A, MENTIONS_REFERENCE]))
    inputs, _ = grpo.read_inputs(SageMakerEnv(job.root))
    assert [g.name for g in inputs.graders] == ["has_a", "says_ref"]
    assert inputs.weights == {"has_a": 1.0, "says_ref": 1.0}
    job.configure({**GRPO_FAST, "graders": json.dumps([CONTAINS_A])})
    assert job.run() != 0
    assert "both a graders channel and a graders hyperparameter" in job.failure


def refuses_another_vocabulary(job, tmp_path, monkeypatch, hyperparameters: dict) -> None:
    """A reward model whose tokenizer was trained on another corpus is refused before any weights load (grpo and
    rloo read the reward_model channel alike)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.train_from_iterator(["a different corpus of words"] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>"]))
    other = tmp_path / "other-tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>").save_pretrained(other)
    add_reward_model_channel(job, build_reward_model(tmp_path / "other-reward", other))
    monkeypatch.setattr("tuneyard_trainer.train.load_model", lambda *a, **k: pytest.fail("weights loaded"))
    monkeypatch.setattr(
        "transformers.AutoModelForSequenceClassification.from_pretrained", lambda *a, **k: pytest.fail("weights loaded")
    )
    job.configure(hyperparameters, train=prompt_rows())
    assert job.run() != 0
    assert "the reward model's vocabulary" in job.failure and "is not the policy's" in job.failure, job.failure


def test_a_reward_model_with_another_vocabulary_is_refused(job, tmp_path, monkeypatch):
    refuses_another_vocabulary(job, tmp_path, monkeypatch, {**GRPO_FAST, "reward_model": "other"})


def test_grpo_fields_are_refused_for_other_methods_and_metrics_are_defined():
    with pytest.raises(ConfigError, match="grpo_beta applies to method grpo only"):
        from_hyperparameters({"method": "lora", "base_model": "x", "grpo_beta": "0.1"})
    for name in ("reward_mean", "reward_std", "kl", "completion_length", "clipped_ratio", "format_miss_ratio",
                 "reward_model", "reward_length_penalty"):
        assert name in METRICS


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_plain_prompts_on_a_tokenizer_without_a_chat_template_are_refused_before_weights_load(
    tmp_path, monkeypatch, method
):
    """The evaluation job answers the eval prompts with the chat template (the gate's reward gain scores those answers):
    a run whose policy tokenizer has none would train on the plain prompts, then fail its evaluation. It is refused
    before any weights load, naming chat_template."""
    base = tmp_path / "no-template"
    build_model(base, build_tokenizer(base, template=None))
    job = Job(tmp_path / "ml", base)
    hyperparameters = {**GRPO_FAST, "graders": json.dumps([CONTAINS_A])} if method == "grpo" else {
        "method": "rloo", "reward_model": "rm", "per_device_train_batch_size": 4, "rloo_num_generations": 4,
    }
    job.configure(hyperparameters, train=[{"prompt": f"Translate to French: {en}"} for en, _ in WORDS])
    if method == "rloo":
        add_reward_model_channel(job, build_reward_model(tmp_path / "reward", base))
    monkeypatch.setattr("tuneyard_trainer.train.load_model", lambda *a, **k: pytest.fail("weights loaded"))
    assert job.run() == 1
    assert "has no chat template" in job.failure and "chat_template" in job.failure, job.failure
    assert "the evaluation job answers the eval prompts with it" in job.failure, job.failure
    if method == "grpo":  # chat_template gives it one: the plain prompts are asked as user turns
        from tuneyard_trainer.sagemaker_env import SageMakerEnv

        job.configure({**hyperparameters, "chat_template": "chatml"})
        monkeypatch.setenv("TUNEYARD_ML_ROOT", str(job.root))
        inputs, tokenizer = grpo.read_inputs(SageMakerEnv(job.root))
        assert tokenizer.chat_template and grpo.prompt_dataset(inputs.rows, True)[0]["prompt"][0]["role"] == "user"
