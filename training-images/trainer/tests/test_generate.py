"""Generation in the evaluation job: answers of the base and the tuned model to the eval prompts, cut at the stop token,
batched (left padding) with the same greedy answers as one by one, written to generations.jsonl beside eval.json."""

import json

import pytest
import torch
from conftest import build_tokenizer, sft_rows
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tuneyard_trainer import generate
from tuneyard_trainer.chat import stop_token_ids


def chain_model(tokenizer, links: dict[int, int]) -> LlamaForCausalLM:
    """A 2-layer Llama whose next token depends on the current token alone: every attention and MLP output is zeroed
    (the residual stream is the token's embedding) and token `a` of `links` gets the embedding e_k and the output head
    row of its successor `links[a]` reads e_k. Any other token has a zero embedding (its next token is id 0)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for k, (token, successor) in enumerate(links.items()):
            model.model.embed_tokens.weight[token, k] = 1.0
            model.lm_head.weight[successor, k] = 10.0
    return model


@pytest.fixture(scope="module")
def rigged(tmp_path_factory):
    """A base whose answer to any chat prompt is "chat" then <|end|> (3 tokens and the stop token), and a LoRA adapter
    on its input embeddings that makes the first token "d" (the tuned answer: "dhat"); saved as the evaluation job's
    model and adapter channels."""
    root = tmp_path_factory.mktemp("rigged")
    tokenizer = build_tokenizer(root / "base")
    start = tokenizer.convert_tokens_to_ids("<|assistant|>")
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    chat = tokenizer("chat", add_special_tokens=False)["input_ids"]
    other = tokenizer("d", add_special_tokens=False)["input_ids"]
    assert len(chat) == 3 and len(other) == 1 and len({start, end, *chat, *other}) == 6
    model = chain_model(tokenizer, {start: chat[0], chat[0]: chat[1], chat[1]: chat[2], chat[2]: end})
    with torch.no_grad():
        model.model.embed_tokens.weight[other[0]] = model.model.embed_tokens.weight[chat[0]]  # "d" continues as "c"
        model.lm_head.weight[other[0], 4] = 30.0  # "d" follows a token whose embedding has e_4 (none in the base)
    model.save_pretrained(root / "base")

    lora = get_peft_model(
        model, LoraConfig(r=1, lora_alpha=1, target_modules=["embed_tokens"], lora_dropout=0.0, init_lora_weights=False)
    )
    with torch.no_grad():
        layer = lora.base_model.model.model.embed_tokens
        layer.lora_embedding_A["default"].zero_()
        layer.lora_embedding_A["default"][0, start] = 1.0
        layer.lora_embedding_B["default"].zero_()
        layer.lora_embedding_B["default"][4, 0] = 1.0  # <|assistant|> gains e_4: "d" (logit ~170) over "c" (~57)
    lora.save_pretrained(root / "trained" / "model" / "adapter")
    tokenizer.save_pretrained(root / "trained" / "model" / "adapter")
    return {"root": root, "base": "chat", "tuned": "dhat", "tokens": 4}


def test_answers_stop_at_the_end_of_turn_token_or_run_to_max_new_tokens(rigged):
    tokenizer = AutoTokenizer.from_pretrained(rigged["root"] / "base")
    model = AutoModelForCausalLM.from_pretrained(rigged["root"] / "base")
    items = generate.prompts(sft_rows()[:3], "chat")
    stops = stop_token_ids(tokenizer)
    assert stops == [tokenizer.convert_tokens_to_ids("<|end|>")]

    answers = generate.generate(model, tokenizer, items, stops, max_new_tokens=16, batch_size=2)
    assert [(a.text, a.tokens, a.stopped) for a in answers] == [("chat", 4, True)] * 3
    cut = generate.generate(model, tokenizer, items, stops, max_new_tokens=2, batch_size=2)
    assert [(a.text, a.tokens, a.stopped) for a in cut] == [("ch", 2, False)] * 3


def test_base_and_tuned_answers_come_from_the_adapter_disabled_and_enabled(rigged):
    tokenizer = AutoTokenizer.from_pretrained(rigged["root"] / "base")
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(rigged["root"] / "base"), rigged["root"] / "trained" / "model" / "adapter"
    )
    items = generate.prompts(sft_rows()[:2], "chat")
    stops = stop_token_ids(tokenizer)
    with tuned.disable_adapter():
        base_answers = generate.generate(tuned, tokenizer, items, stops, max_new_tokens=8)
    tuned_answers = generate.generate(tuned, tokenizer, items, stops, max_new_tokens=8)
    assert [a.text for a in base_answers] == [rigged["base"]] * 2
    assert [a.text for a in tuned_answers] == [rigged["tuned"]] * 2


def test_evaluate_writes_both_answers_of_each_prompt_to_generations_jsonl(make_job, rigged):
    """The evaluation job on the rigged base and adapter: one row per prompt (the first max_generations of the eval
    file), its reference and both answers, each stopped at <|end|>; eval.json says how many and under which caps."""
    rows = sft_rows()[:5]
    job = make_job("generations").configure({"max_generations": 4, "max_new_tokens": 12}, eval=rows)
    (job.root / "input" / "data" / "model").unlink()
    (job.root / "input" / "data" / "model").symlink_to(rigged["root"] / "base", target_is_directory=True)
    (job.root / "input" / "data" / "adapter").symlink_to(rigged["root"] / "trained" / "model", target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure

    lines = (job.model_dir / "generations.jsonl").read_text().splitlines()
    assert (job.root / "output" / "data" / "generations.jsonl").read_text().splitlines() == lines
    written = [json.loads(line) for line in lines]
    assert [row["index"] for row in written] == [0, 1, 2, 3]
    for row, source in zip(written, rows):
        assert row["prompt"] == source["messages"][:-1] and row["reference"] == source["messages"][-1]["content"]
        assert (row["base"], row["tuned"]) == (rigged["base"], rigged["tuned"])
        assert row["base_tokens"] == row["tuned_tokens"] == rigged["tokens"]
        assert row["base_stopped"] and row["tuned_stopped"]

    report = json.loads((job.model_dir / "eval.json").read_text())
    generation = report["generation"]
    assert {k: generation[k] for k in ("file", "items", "of", "max_generations", "max_new_tokens", "greedy")} == {
        "file": "generations.jsonl", "items": 4, "of": 5, "max_generations": 4, "max_new_tokens": 12, "greedy": True
    }
    assert generation["identical_answers"] == 0
    for side in ("base", "tuned"):
        assert generation[side]["tokens"] == 4 * rigged["tokens"] and generation[side]["stopped"] == 4
        assert generation[side]["mean_tokens"] == rigged["tokens"] and generation[side]["tokens_per_second"] > 0
    assert report["schema_version"] == 1 and report["benchmarks"] is None


def test_max_generations_0_writes_no_generations(make_job, rigged):
    job = make_job("no-generations").configure({"max_generations": 0}, eval=sft_rows()[:3])
    (job.root / "input" / "data" / "model").unlink()
    (job.root / "input" / "data" / "model").symlink_to(rigged["root"] / "base", target_is_directory=True)
    (job.root / "input" / "data" / "adapter").symlink_to(rigged["root"] / "trained" / "model", target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    assert json.loads((job.model_dir / "eval.json").read_text())["generation"] is None
    assert not (job.model_dir / "generations.jsonl").exists()


def test_a_setting_that_is_not_a_whole_number_fails_with_its_name(job):
    job.configure({"max_new_tokens": "lots"}, eval=sft_rows()[:2])
    assert job.run("evaluate") == 1
    assert "hyperparameter max_new_tokens: 'lots' is not a whole number of at least 1" in job.failure


LONGER = [
    {"messages": [{"role": "user", "content": f"Describe the {en} and the {fr} near the road, then translate {en}."},
                  {"role": "assistant", "content": fr}]}
    for en, fr in (("cat", "chat"), ("moon", "lune"), ("sea", "mer"))
]


def test_batched_answers_are_the_greedy_answers_one_by_one(base_model_dir):
    """Prompts of different lengths in one batch (left padding, the mask and positions from it) give the answers each
    prompt gets alone, on a random model whose answers depend on every prompt token."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir)
    items = generate.prompts(sft_rows()[:5] + LONGER, "chat")
    lengths = {len(generate._prompt_ids(tokenizer, item)) for item in items}
    assert len(lengths) > 2  # the batch pads
    stops = stop_token_ids(tokenizer)
    alone = generate.generate(model, tokenizer, items, stops, max_new_tokens=10, batch_size=1)
    batched = generate.generate(model, tokenizer, items, stops, max_new_tokens=10, batch_size=8)
    print([a.text for a in alone])
    assert batched == alone
    assert len({a.text for a in alone}) > 1  # the answers depend on the prompt


def test_prompts_of_each_format_end_before_the_last_assistant_turn():
    chat = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
                          {"role": "assistant", "content": "Goodbye"}]}]
    [item] = generate.prompts(chat, "chat")
    assert item.messages == chat[0]["messages"][:4] and item.reference == "Goodbye"
    [item] = generate.prompts([{"prompt": "2+2?", "completion": "4"}], "prompt-completion")
    assert item.messages == [{"role": "user", "content": "2+2?"}] and item.reference == "4"
    [item] = generate.prompts([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}], "preference")
    assert item.messages == [{"role": "user", "content": "2+2?"}] and item.reference == "4"
    assert generate.prompts([{"text": "no prompt here"}], "text") == []


def test_the_run_s_graders_score_both_answers_of_each_prompt(make_job, rigged):
    """The graders of the run (its `graders` hyperparameter, as PlanRun writes it) grade the base and the tuned answers:
    per-answer scores in generations.jsonl, means in eval.json. `item` is the eval row as written, with `reference`."""
    checks = [
        {"type": "string_check", "name": "says_chat", "input": "{{ sample.output_text }}", "reference": "chat", "operation": "eq"},
        {"type": "string_check", "name": "as_expected", "input": "{{ sample.output_text }}", "reference": "{{ item.expected }}", "operation": "eq"},
        {"type": "string_check", "name": "is_reference", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"},
    ]
    rows = [{**row, "expected": "dhat"} for row in sft_rows()[:3]]
    job = make_job("graded").configure({"graders": json.dumps(checks), "max_new_tokens": 8}, eval=rows)
    (job.root / "input" / "data" / "model").unlink()
    (job.root / "input" / "data" / "model").symlink_to(rigged["root"] / "base", target_is_directory=True)
    (job.root / "input" / "data" / "adapter").symlink_to(rigged["root"] / "trained" / "model", target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure

    written = [json.loads(line) for line in (job.model_dir / "generations.jsonl").read_text().splitlines()]
    # the first row's reference is "chat" (the French for cat): the base's answer
    assert [row["reference"] for row in written] == ["chat", "chien", "oiseau"]
    assert [row["base_scores"] for row in written] == [
        {"says_chat": 1.0, "as_expected": 0.0, "is_reference": float(i == 0)} for i in range(3)
    ]
    assert [row["tuned_scores"] for row in written] == [{"says_chat": 0.0, "as_expected": 1.0, "is_reference": 0.0}] * 3
    report = json.loads((job.model_dir / "eval.json").read_text())["graders"]
    assert {side: {name: r["mean"] for name, r in results.items()} for side, results in report.items()} == {
        "base": {"says_chat": 1.0, "as_expected": 0.0, "is_reference": 1 / 3},
        "tuned": {"says_chat": 0.0, "as_expected": 1.0, "is_reference": 0.0},
    }
    assert report["base"]["says_chat"]["graded"] == 3 and report["base"]["says_chat"]["error_count"] == 0


def test_graders_without_generations_fail_before_any_weights_load(job):
    checks = [{"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"}]
    job.configure({"graders": json.dumps(checks), "max_generations": 0}, eval=sft_rows()[:2])
    assert job.run("evaluate") == 1
    assert "max_generations is 0, but the run names graders" in job.failure


def test_the_defaults_planrun_states_are_the_evaluation_job_s():
    """lib/run-request.ts states the evaluation's defaults (DEFAULT_EVALUATION, in the RunRequest's descriptions) but
    leaves them out of the job's hyperparameters: they must be the ones evaluate.py applies."""
    import re

    from conftest import REPO_ROOT

    from tuneyard_trainer.evaluate import SETTINGS, evaluation_settings

    source = (REPO_ROOT / "lib" / "run-request.ts").read_text()
    stated = dict(re.findall(r"(\w+): (\d+)", re.search(r"DEFAULT_EVALUATION = \{([^}]*)\}", source).group(1)))
    keys = {"maxGenerations": "max_generations", "maxNewTokens": "max_new_tokens", "maxBenchmarkItems": "max_benchmark_items"}
    assert set(stated) == set(keys)
    assert {keys[k]: int(v) for k, v in stated.items()} == {key: SETTINGS[key][0] for key in keys.values()}
    assert evaluation_settings({})["max_generations"] == int(stated["maxGenerations"])
