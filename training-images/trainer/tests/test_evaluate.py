"""`evaluate`: eval.json for the pipeline's gate, from a real training output (the shared LoRA run)."""

import json
import math
import os

import pytest
import torch
from conftest import DPO_LORA_RUN, FAST, REPO_ROOT, WORDS, Job, dpo_rows, probe_rows, sft_rows, write_jsonl
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneyard_trainer import merge, train
from tuneyard_trainer.data import render_sft
from tuneyard_trainer.evaluate import mean_loss
from tuneyard_trainer.sagemaker_env import SageMakerEnv

KEYS = {"schema_version", "base", "tuned", "eval_loss_ratio", "forgetting_increase", "examples", "generation", "benchmarks", "graders"}

# The real reports this trainer writes, committed for the pipeline's ReadEvalReport tests (the TypeScript side
# of the eval.json contract reads them instead of a hand-written copy). TUNEYARD_UPDATE_FIXTURES=1 rewrites them.
FIXTURES = REPO_ROOT / "test" / "fixtures" / "contracts"


def shape(value):
    """The key tree and JSON types of a report, without its numbers."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def check_fixture(name: str, report: dict) -> None:
    path = FIXTURES / name
    if os.environ.get("TUNEYARD_UPDATE_FIXTURES") == "1":
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert shape(committed) == shape(report), f"{path} no longer has the shape evaluate writes: rerun with TUNEYARD_UPDATE_FIXTURES=1"


def evaluation(make_job, trained, name="evaluate", **channels):
    """Runs `evaluate` on a training job's model output (the adapter channel)."""
    job = make_job(name).configure({}, **channels)
    (job.root / "input" / "data" / "adapter").symlink_to(trained.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())
    assert (job.root / "output" / "data" / "eval.json").read_text() == (job.model_dir / "eval.json").read_text()
    return report


def test_eval_report_compares_base_and_tuned_with_the_probe(make_job, lora_run):
    report = evaluation(make_job, lora_run, eval=sft_rows()[:8], probe=probe_rows())
    assert set(report) == KEYS
    assert report["schema_version"] == 1 and report["examples"] == 8
    for side in ("base", "tuned"):
        figures = report[side]
        assert set(figures) == {"eval_loss", "eval_perplexity", "probe_loss"}
        assert figures["eval_perplexity"] == pytest.approx(math.exp(figures["eval_loss"]))
        assert figures["probe_loss"] > 0
    assert report["tuned"]["eval_loss"] < report["base"]["eval_loss"] - 0.1  # the rows it was trained on
    assert report["eval_loss_ratio"] == pytest.approx(report["tuned"]["eval_loss"] / report["base"]["eval_loss"])
    assert report["forgetting_increase"] == pytest.approx(report["tuned"]["probe_loss"] - report["base"]["probe_loss"])
    assert report["forgetting_increase"] != 0
    check_fixture("eval-report-probe.json", report)


def test_without_a_probe_the_forgetting_figures_are_null(make_job, lora_run):
    report = evaluation(make_job, lora_run, eval=sft_rows()[:4])
    assert report["base"]["probe_loss"] is None and report["tuned"]["probe_loss"] is None
    assert report["forgetting_increase"] is None and report["examples"] == 4
    check_fixture("eval-report.json", report)


def test_evaluate_without_channels_fails_with_a_reason(job):
    job.configure({})
    assert job.run("evaluate") == 1
    assert "evaluate needs the model (base weights) and adapter (training output) channels" in job.failure


def test_a_training_output_is_read_as_a_folder_and_a_lone_tarball_is_extracted(tmp_path, lora_run):
    """The adapter channel is the training job's model/ output, adapter.tar.gz included: it is read as the folder
    (so training_config.json is found); a channel that is only a compressed model.tar.gz is extracted."""
    env = SageMakerEnv(tmp_path)
    channel = tmp_path / "input" / "data" / "adapter"
    channel.parent.mkdir(parents=True)
    channel.symlink_to(lora_run.model_dir, target_is_directory=True)
    assert (channel / "adapter.tar.gz").exists()
    assert env.channel_model("adapter", tmp_path / "scratch") == channel

    compressed = tmp_path / "input" / "data" / "model"
    compressed.mkdir()
    (compressed / "model.tar.gz").write_bytes((lora_run.model_dir / "adapter.tar.gz").read_bytes())
    extracted = env.channel_model("model", tmp_path / "scratch")
    assert extracted == tmp_path / "scratch" / "model" and (extracted / "adapter_config.json").exists()


LONG_AND_SHORT = sft_rows()[:7] + [
    {
        "messages": [
            {"role": "user", "content": f"Describe the {en}."},
            {"role": "assistant", "content": f"The {en} and the {fr} are near the road. " * 4},
        ]
    }
    for en, fr in (("cat", "dog"), ("sun", "moon"))
]


def hand_token_mean(model, tokenizer, rows: list[dict]) -> float:
    """NLL of every response token (the assistant message and its end-of-turn token after the prompt), summed over
    the rows one at a time, divided by their count."""
    total, count = 0.0, 0
    for row in rows:
        prompt, reply = row["messages"][:-1], row["messages"]
        prefix = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        ids = tokenizer.apply_chat_template(reply, tokenize=True, return_dict=True)["input_ids"]
        start = len(prefix["input_ids"])
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        total -= sum(float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids)))
        count += len(ids) - start
    return total / count


def test_eval_loss_is_the_mean_over_label_tokens_whatever_the_batch_size(tmp_path, base_model_dir):
    """Responses of a few tokens and of dozens: a mean of batch means weighs every batch the same, so it changes with
    the batch size (the issue measured 5.803 at batch 4 against a token mean of 5.974)."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    rows = render_sft(LONG_AND_SHORT, "chat")
    expected = hand_token_mean(model, tokenizer, rows)
    figures = {size: mean_loss(model, tokenizer, rows, True, 256, tmp_path, batch_size=size) for size in (1, 2, 4, 9)}
    print(f"token mean by hand {expected:.6f}; eval_loss by eval batch size {figures}")
    assert figures == pytest.approx({size: expected for size in figures}, rel=1e-5)

    # the evaluations during training (early stopping, the best checkpoint, metric lines) take the same figure
    job = Job(tmp_path / "ml", base_model_dir).configure(
        {**FAST, "method": "sft", "max_length": 256}, train=sft_rows(), eval=LONG_AND_SHORT
    )
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    trainer = train.build_trainer(inputs, env, train.load_tokenizer(inputs.model_source, inputs.train.format), [])
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_eval_loss_never_builds_the_logits(tmp_path, base_model_dir):
    """The eval loop scores label tokens through TRL's fused LM head, in tiles: the output projection is never called
    as a module on the hidden states (which would build the (batch, length, vocabulary) logits; SFTTrainer's own eval
    does, in a second forward pass), and the figure is still the token mean."""
    job = Job(tmp_path / "ml", base_model_dir).configure(
        {**FAST, "method": "sft", "max_length": 256}, train=sft_rows(), eval=LONG_AND_SHORT
    )
    env = SageMakerEnv(job.root)
    inputs = train.read_inputs(env)
    tokenizer = train.load_tokenizer(inputs.model_source, inputs.train.format)
    trainer = train.build_trainer(inputs, env, tokenizer, [])
    head_outputs = []
    hook = trainer.model.get_output_embeddings().register_forward_hook(lambda m, i, out: head_outputs.append(out.shape))
    try:
        figure = trainer.evaluate()["eval_loss"]
        assert head_outputs == [], f"the eval loop built logits of shape {head_outputs}"
        with torch.no_grad():  # the hook does see a forward that builds logits
            trainer.model(torch.tensor([[1, 2, 3]]))
        assert len(head_outputs) == 1
    finally:
        hook.remove()
    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    assert figure == pytest.approx(hand_token_mean(model, tokenizer, render_sft(LONG_AND_SHORT, "chat")), rel=1e-5)


def completion_logprob(model, tokenizer, messages: list[dict]) -> float:
    """Log-probability of the last (assistant) message's tokens, its end-of-turn token included, after the rest."""
    prefix = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(len(prefix["input_ids"]), len(ids)))


def hand_preference(tuned, base, tokenizer, pairs: list[dict], beta: float) -> dict:
    """DPO's implicit rewards, beta * (log p_tuned - log p_base) of each response, over the pairs one at a time."""
    chosen, rejected = [], []
    for pair in pairs:
        prompt = [{"role": "user", "content": pair["prompt"]}]
        for side, rewards in (("chosen", chosen), ("rejected", rejected)):
            messages = prompt + [{"role": "assistant", "content": pair[side]}]
            rewards.append(beta * (completion_logprob(tuned, tokenizer, messages) - completion_logprob(base, tokenizer, messages)))
    preferred = sum(c > r for c, r in zip(chosen, rejected))
    return {
        "pairs": len(pairs),
        "preferred": preferred,
        "accuracy": preferred / len(pairs),
        "chosen_reward": sum(chosen) / len(pairs),
        "rejected_reward": sum(rejected) / len(pairs),
        "reward_margin": sum(c - r for c, r in zip(chosen, rejected)) / len(pairs),
        "beta": beta,
    }


# Seven pairs: no batch size but 1 and 7 divides them, so a mean of per-batch means would not be a mean over pairs.
HELD_OUT_PAIRS = dpo_rows()[:5] + [
    {"prompt": "Translate to French: cat", "chosen": "chat", "rejected": "chien"},
    {"prompt": "Translate to French: sun", "chosen": "soleil", "rejected": "lune"},
]


def test_dpo_adapter_is_evaluated_on_preference_pairs_against_the_base(make_job, dpo_lora_run, base_model_dir):
    """A DPO run's report says how often the tuned model prefers the chosen response of a held-out pair, by the
    implicit reward DPO trains (the chosen response's loss, which DPO does not minimise, is not what it learnt); the
    reference is the base model (the adapter disabled), as in training."""
    job, _ = dpo_lora_run
    report = evaluation(make_job, job, eval=HELD_OUT_PAIRS)
    assert set(report) == KEYS | {"preference"} and report["schema_version"] == 1 and report["examples"] == 7

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model_dir), job.model_dir / "adapter").eval()
    expected = hand_preference(tuned, base, tokenizer, HELD_OUT_PAIRS, DPO_LORA_RUN["dpo_beta"])
    print(f"preference by hand {expected}; in eval.json {report['preference']}")
    assert report["preference"] == pytest.approx(expected, abs=1e-4)
    assert report["preference"]["accuracy"] >= 5 / 7 and report["preference"]["reward_margin"] > 0.5
    check_fixture("eval-report-dpo.json", report)


def test_full_weight_dpo_is_evaluated_against_the_base_weights(make_job, dpo_lora_run, base_model_dir, tmp_path):
    """The output of a full-weight DPO run (here: the DPO adapter merged into the base, written as full weights):
    its rewards are measured against the base weights of the model channel."""
    job, _ = dpo_lora_run
    output = tmp_path / "full-dpo" / "model"
    merge.merge_adapter(str(base_model_dir), job.model_dir / "adapter", output / "full")
    written = json.loads((job.model_dir / "training_config.json").read_text())
    written["config"]["use_lora"] = False
    (output / "training_config.json").write_text(json.dumps(written))
    report = evaluation(make_job, Job(tmp_path / "full-dpo", base_model_dir), eval=HELD_OUT_PAIRS)

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    tuned = AutoModelForCausalLM.from_pretrained(output / "full", dtype=torch.float32).eval()
    expected = hand_preference(tuned, base, tokenizer, HELD_OUT_PAIRS, DPO_LORA_RUN["dpo_beta"])
    assert report["preference"] == pytest.approx(expected, abs=1e-4)
    assert report["preference"]["accuracy"] >= 5 / 7



def test_rows_longer_than_max_length_are_left_out_as_in_training(make_job, lora_run):
    """The shared LoRA run dropped the rows longer than its max_length (64 tokens, overlong_rows=drop): evaluating it
    leaves them out of the figures too, for the base and the tuned model alike."""
    assert json.loads((lora_run.model_dir / "training_config.json").read_text())["config"]["overlong_rows"] == "drop"
    story = {"role": "assistant", "content": "The cat and the dog are near the road. " * 8}
    overlong = [{"messages": [{"role": "user", "content": f"Describe the {a}."}, story]} for a in ("cat", "dog")]
    with_overlong = evaluation(make_job, lora_run, "with-overlong", eval=sft_rows()[:4] + overlong)
    fitting = evaluation(make_job, lora_run, "fitting", eval=sft_rows()[:4])
    for side in ("base", "tuned"):
        assert with_overlong[side]["eval_loss"] == pytest.approx(fitting[side]["eval_loss"], rel=1e-6)
    assert with_overlong["examples"] == 6  # the eval channel's rows


def hand_accuracy(model, tokenizer, items: list[dict]) -> tuple[float, float]:
    """acc and acc_norm as lm-eval computes them, each choice scored alone (unpadded, the whole vocabulary)."""
    right = right_norm = 0
    for item in items:
        context = f"Question: {item['question']}\nAnswer:"
        lls = []
        for choice in item["choices"]:
            context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
            ids = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
            lls.append(sum(float(logprobs[t - 1, ids[t]]) for t in range(len(context_ids), len(ids))))
        right += max(range(len(lls)), key=lambda c: lls[c]) == item["answer"]
        normed = [ll / len(choice) for ll, choice in zip(lls, item["choices"])]
        right_norm += max(range(len(normed)), key=lambda c: normed[c]) == item["answer"]
    return right / len(items), right_norm / len(items)


def translation_items(offset: int) -> list[dict]:
    return [
        {"question": f"Translate to French: {en}", "choices": [WORDS[(i + k) % len(WORDS)][1] for k in range(3)], "answer": 0}
        for i, (en, _) in enumerate(WORDS[offset : offset + 8], start=offset)
    ]


def test_benchmark_accuracy_of_base_and_tuned_goes_into_the_report(make_job, lora_run, base_model_dir):
    """Each file of the benchmarks channel is one benchmark (its first max_benchmark_items items), scored for the base
    (the adapter disabled) and the tuned model; eval.json carries both accuracies and the drop, beside the generations
    summary. The report is the fixture the pipeline's ReadEvalReport tests read."""
    checks = [
        {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"},
        {"type": "text_similarity", "name": "fuzzy", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5},
    ]
    channel = {"max_benchmark_items": 6, "max_new_tokens": 16, "graders": json.dumps(checks)}
    job = make_job("benchmarks").configure(channel, eval=sft_rows()[:4])
    for name, offset in (("translate-a", 0), ("translate-b", 8)):
        write_jsonl(job.root / "input" / "data" / "benchmarks" / f"{name}.jsonl", translation_items(offset))
    (job.root / "input" / "data" / "adapter").symlink_to(lora_run.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model_dir), lora_run.model_dir / "adapter").eval()
    assert [entry["name"] for entry in report["benchmarks"]] == ["translate-a", "translate-b"]
    for entry, offset in zip(report["benchmarks"], (0, 8)):
        items = translation_items(offset)[:6]
        base_acc, base_norm = hand_accuracy(base, tokenizer, items)
        tuned_acc, tuned_norm = hand_accuracy(tuned, tokenizer, items)
        print(f"{entry['name']}: by hand base {base_acc, base_norm}, tuned {tuned_acc, tuned_norm}; in eval.json {entry}")
        assert entry == pytest.approx({
            "name": entry["name"], "items": 6, "of": 8,
            "base_accuracy": base_acc, "tuned_accuracy": tuned_acc, "drop": base_acc - tuned_acc,
            "base_accuracy_norm": base_norm, "tuned_accuracy_norm": tuned_norm, "drop_norm": base_norm - tuned_norm,
        })
    assert report["generation"]["items"] == 4 and report["generation"]["max_new_tokens"] == 16
    written = [json.loads(line) for line in (job.model_dir / "generations.jsonl").read_text().splitlines()]
    assert len(written) == 4
    for side in ("base", "tuned"):  # the graders' means: over the answers in generations.jsonl
        exact = [float(row[side] == row["reference"]) for row in written]
        assert [row[f"{side}_scores"]["exact"] for row in written] == exact
        assert report["graders"][side]["exact"]["mean"] == pytest.approx(sum(exact) / 4)
        fuzzy = [row[f"{side}_scores"]["fuzzy"] for row in written]
        assert report["graders"][side]["fuzzy"]["mean"] == pytest.approx(sum(fuzzy) / 4)
        assert report["graders"][side]["fuzzy"]["passed"] == pytest.approx(sum(f >= 0.5 for f in fuzzy) / 4)
    check_fixture("eval-report-benchmarks.json", report)


def test_graders_that_cannot_grade_are_reported_so_the_gate_fails_closed(make_job, lora_run):
    """A grader whose template names a field the eval rows lack errors on every row (graded 0, each error listed), and a
    score_model grader (an LLM judge the job does not run) is unavailable (mean null): the gate cannot pass a threshold
    on either. The report is the fixture the pipeline's ReadEvalReport tests read for those fail-closed cases."""
    checks = [
        {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"},
        {"type": "string_check", "name": "label", "input": "{{ sample.output_text }}", "reference": "{{ item.label }}", "operation": "eq"},
        {"type": "score_model", "name": "rubric", "model": "m", "input": [{"role": "user", "content": "Rate {{ sample.output_text }}"}], "range": [0, 1]},
    ]
    job = make_job("grader-errors").configure({"max_new_tokens": 8, "graders": json.dumps(checks)}, eval=sft_rows()[:3])
    (job.root / "input" / "data" / "adapter").symlink_to(lora_run.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())
    for side in ("base", "tuned"):
        graders = report["graders"][side]
        assert graders["exact"]["graded"] == 3 and graders["exact"]["error_count"] == 0
        assert graders["label"]["graded"] == 0 and graders["label"]["error_count"] == 3
        assert "label" in graders["label"]["errors"][0]["error"]
        assert graders["rubric"]["mean"] is None and graders["rubric"]["unavailable"]
    check_fixture("eval-report-grader-errors.json", report)
