"""Reward models (method=reward) on a tiny random-init Llama: the held-out pairwise accuracy rises from chance, the
written model loads alone as AutoModelForSequenceClassification and scores as the eval job reports, bad configs fail
before any weights load, and the eval job's eval.json of a reward run (the contract fixture for ReadEvalReport)."""

import contextlib
import io
import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import FAST, WORDS, sft_rows, write_jsonl
from test_evaluate import check_fixture, evaluation
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tuneyard_trainer import reward
from tuneyard_trainer.chat import preference_dataset
from tuneyard_trainer.data import render_dpo

MARKER = "star"  # the chosen response ends with it; the rejected one ends with another word of the corpus
OTHERS = ["road", "sea", "tree", "door", "moon"]


def marker_pairs(words: list[str]) -> list[dict]:
    """Separable pairs: the same answer, the chosen one ending with MARKER, the rejected one with another word."""
    return [
        {"prompt": f"Translate to French: {w}", "chosen": f"{w} {MARKER}", "rejected": f"{w} {OTHERS[i % len(OTHERS)]}"}
        for i, w in enumerate(words)
    ]


TRAIN_PAIRS = marker_pairs([w for pair in WORDS[:16] for w in pair])  # 32 pairs
HELD_OUT_PAIRS = marker_pairs([w for pair in WORDS[16:] for w in pair])  # 8 pairs of words never trained on
REWARD_LORA_RUN = {**FAST, "method": "reward", "num_train_epochs": 4, "learning_rate": 3e-3, "eval_steps": 8, "save_steps": 8}


def scores(model, tokenizer, pairs: list[dict], tmp_path: Path) -> list[tuple[float, float]]:
    dataset = preference_dataset(render_dpo(pairs, "preference"), tokenizer)
    return reward.score_pairs(model, tokenizer, dataset, 64, tmp_path)


@pytest.fixture(scope="module")
def reward_lora_run(tmp_path_factory, base_model_dir):
    from conftest import Job

    job = Job(tmp_path_factory.mktemp("reward-lora-run") / "ml", base_model_dir)
    job.configure(REWARD_LORA_RUN, train=TRAIN_PAIRS, eval=HELD_OUT_PAIRS)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert job.run() == 0, job.failure
    job.stdout = stdout.getvalue()
    return job


def test_reward_model_ranks_held_out_pairs_well_above_chance(reward_lora_run, base_model_dir, tmp_path):
    job = reward_lora_run
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    torch.manual_seed(0)  # the base with a fresh score head: what training starts from
    before = reward.reward_figures(scores(reward.load_model(str(base_model_dir)), tokenizer, HELD_OUT_PAIRS, tmp_path))
    tuned = AutoModelForSequenceClassification.from_pretrained(job.model_dir / "full")
    after = reward.reward_figures(scores(tuned, tokenizer, HELD_OUT_PAIRS, tmp_path))
    history = json.loads((job.model_dir / "training_history.json").read_text())["log_history"]
    evals = [e for e in history if "eval_accuracy" in e]
    print(f"held-out accuracy before {before['accuracy']}, after {after['accuracy']}; trainer's evals {evals}")
    assert after["accuracy"] >= 0.9 and after["reward_margin"] > 1.0
    assert after["accuracy"] >= before["accuracy"] + 0.3
    assert after["reward_margin"] > before["reward_margin"] + 1.0
    # the trainer's own held-out evaluation (the eval channel) says the same at the end
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["final_metrics"]["eval_accuracy"] >= 0.9
    assert written["final_metrics"]["eval_margin"] == pytest.approx(after["reward_margin"], rel=0.05)
    assert written["artifacts"] == {"adapter": "adapter", "full": "full"}


def test_every_training_step_prints_the_pairwise_figures_as_metric_lines(reward_lora_run):
    """The metric lines SageMaker's MetricDefinitions read: reward_accuracy and reward_margin of each logged step, as
    for DPO, beside the loss."""
    lines = [line for line in reward_lora_run.stdout.splitlines() if line.startswith("tuneyard-metrics: ")]
    steps = [line for line in lines if " train_loss=" in line]
    assert len(steps) == 32  # 4 epochs of 8 steps, logging_steps=1
    assert all(" reward_accuracy=" in line and " reward_margin=" in line for line in steps)
    margins = [float(re.search(r" reward_margin=(\S+)", line).group(1)) for line in steps]
    assert sum(margins[-4:]) / 4 > sum(margins[:4]) / 4 + 1.0


def test_the_written_reward_model_loads_alone_and_scores_as_trained(reward_lora_run, base_model_dir, tmp_path):
    """model/full is the adapter and its trained score head merged: alone, it scores as the base + adapter does."""
    from peft import PeftModel

    job = reward_lora_run
    adapter = json.loads((job.model_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir / "full")
    merged = AutoModelForSequenceClassification.from_pretrained(job.model_dir / "full")
    assert merged.config.num_labels == 1 and merged.config.pad_token_id == tokenizer.pad_token_id
    assert "lora" not in " ".join(name for name, _ in merged.named_parameters())
    base = reward.load_model(str(base_model_dir))
    base.config.pad_token_id = tokenizer.pad_token_id
    unmerged = PeftModel.from_pretrained(base, job.model_dir / "adapter")
    merged_scores = scores(merged, tokenizer, HELD_OUT_PAIRS, tmp_path)
    unmerged_scores = scores(unmerged, tokenizer, HELD_OUT_PAIRS, tmp_path)
    flat = lambda pairs: [score for pair in pairs for score in pair]  # noqa: E731
    assert flat(merged_scores) == pytest.approx(flat(unmerged_scores), abs=1e-4)
    # the one score of one conversation, by hand: the last token's (the end of turn's) value of the score head
    pair = HELD_OUT_PAIRS[0]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["chosen"]}], tokenize=False
    )
    with torch.no_grad():
        by_hand = merged(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
    assert by_hand == pytest.approx(merged_scores[0][0], abs=1e-4)


def test_full_weight_reward_model_learns_too(job, base_model_dir, tmp_path):
    job.configure(
        {**FAST, "method": "reward", "use_lora": False, "num_train_epochs": 4, "learning_rate": 1e-3},
        train=TRAIN_PAIRS, eval=HELD_OUT_PAIRS,
    )
    assert job.run() == 0, job.failure
    written = json.loads((job.model_dir / "training_config.json").read_text())
    assert written["artifacts"] == {"full": "full"} and not (job.model_dir / "adapter").exists()
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir / "full")
    tuned = AutoModelForSequenceClassification.from_pretrained(job.model_dir / "full")
    after = reward.reward_figures(scores(tuned, tokenizer, HELD_OUT_PAIRS, tmp_path))
    print(f"full-weight reward model on held-out pairs: {after}")
    assert after["accuracy"] >= 0.9


def test_the_score_head_is_initialised_from_the_recipe_s_seed(base_model_dir):
    """The head is created at random when the model loads, before the trainer seeds: the recipe's seed decides it, so a
    reward run is reproducible whatever ran before it in the process."""
    from tuneyard_trainer.config import from_hyperparameters
    from tuneyard_trainer.train import load_model

    before = iter(range(1000, 1010))

    def head(seed: int) -> torch.Tensor:
        torch.manual_seed(next(before))  # whatever the process drew before: another state each time
        config = from_hyperparameters({"method": "reward", "seed": str(seed), "base_model": str(base_model_dir)})
        return load_model(config, str(base_model_dir)).score.weight.detach().clone()

    assert torch.equal(head(1), head(1))
    assert not torch.equal(head(1), head(2))


def test_a_reward_run_on_responses_fails_before_any_weights_load(job, monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(reward, "load_model", no_weights)
    job.configure({**FAST, "method": "reward"}, train=sft_rows())
    assert job.run() == 1
    assert "PreflightError: channel train: " in job.failure
    assert "not-preference: method reward needs preference pairs (prompt/chosen/rejected); the file is chat" in job.failure
    assert not job.model_dir.exists()


@pytest.mark.parametrize(
    "hyper, expected",
    [
        ({"merge": True}, "merge applies to method lora or qlora or dpo"),
        ({"use_lora": False, "lora_r": 8}, "lora_r has no effect with method=reward and use_lora=false"),
        ({"dpo_beta": 0.2}, "dpo_beta applies to method dpo only"),
    ],
)
def test_reward_configs_that_cannot_run_are_refused(job, hyper, expected):
    job.configure({**FAST, "method": "reward", **hyper}, train=TRAIN_PAIRS)
    assert job.run() == 1
    assert "ConfigError" in job.failure and expected in job.failure, job.failure
    assert not job.model_dir.exists()


def test_the_eval_job_reports_the_reward_models_pairwise_accuracy(make_job, reward_lora_run, base_model_dir, tmp_path):
    """eval.json of a reward run: `preference` from the reward model's scores of the held-out pairs (beta null), its
    pairwise loss against chance (ln 2: a model that scores every response alike), and nothing a generating model
    would be measured on."""
    report = evaluation(make_job, reward_lora_run, "evaluate-reward", eval=HELD_OUT_PAIRS)
    tokenizer = AutoTokenizer.from_pretrained(reward_lora_run.model_dir / "full")
    tuned = AutoModelForSequenceClassification.from_pretrained(reward_lora_run.model_dir / "full")
    expected = scores(tuned, tokenizer, HELD_OUT_PAIRS, tmp_path)
    assert report["preference"] == pytest.approx(reward.reward_figures(expected), abs=1e-4)
    assert report["preference"]["beta"] is None and report["preference"]["accuracy"] >= 0.9
    assert report["base"]["eval_loss"] == pytest.approx(math.log(2))
    assert report["tuned"]["eval_loss"] == pytest.approx(reward.pair_loss(expected), abs=1e-6)
    assert report["eval_loss_ratio"] == pytest.approx(report["tuned"]["eval_loss"] / math.log(2))
    assert report["eval_loss_ratio"] < 0.5
    assert report["examples"] == len(HELD_OUT_PAIRS) and report["forgetting_increase"] is None
    assert report["generation"] is None and report["graders"] is None and report["benchmarks"] is None
    page = (make_job("evaluate-reward").model_dir / "report.html").read_text()
    assert "Reward model pairwise accuracy: <b>1</b> (8/8 pairs)" in page and "DPO preference" not in page
    check_fixture("eval-report-reward.json", report)


def test_the_eval_job_refuses_a_probe_for_a_reward_model(make_job, reward_lora_run):
    job = make_job("evaluate-reward-probe").configure({}, eval=HELD_OUT_PAIRS, probe=sft_rows())
    (job.root / "input" / "data" / "adapter").symlink_to(reward_lora_run.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 1
    assert "a reward model" in job.failure and "probe" in job.failure


def test_write_jsonl_helper_is_the_one_the_jobs_use(tmp_path):
    # the pairs above are valid `preference` rows for the trainer's own validator
    from tuneyard_trainer.data import validate_file

    report = validate_file(write_jsonl(tmp_path / "pairs.jsonl", TRAIN_PAIRS + HELD_OUT_PAIRS), "reward")
    assert report.format == "preference" and not report.errors and len(report.rows) == 40
