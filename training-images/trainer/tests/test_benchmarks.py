"""Multiple-choice benchmarks scored by log-likelihood as lm-evaluation-harness scores them: the sum of the choice
tokens' log-probabilities after the context (acc), and that sum over the choice's length in characters (acc_norm)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, build_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tuneyard_trainer import benchmarks
from tuneyard_trainer.benchmarks import BenchmarkError, Item


def favouring_model(tokenizer, favoured: list[int], probability: float) -> LlamaForCausalLM:
    """A 2-layer Llama that predicts the same distribution after every token, whatever the context: every token has the
    embedding e_0, every attention and MLP output is zeroed, and the output head gives each `favoured` token the
    probability `probability` (the rest share what is left)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    others = len(tokenizer) - len(favoured)
    # logit x for each favoured token, 0 for the others: e^x / (n e^x + others) = probability
    logit = math.log(probability * others / (1 - probability * len(favoured)))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[favoured, 0] = logit / 8.0  # the final RMSNorm makes e_0 into 8 e_0 (hidden size 64)
    return model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("benchmark-tokenizer"))


def test_a_model_that_prefers_a_choice_scores_every_item_whose_answer_it_is_and_no_other(tokenizer):
    """The model favours the tokens of " cat": it picks "cat" on every item, right where "cat" is the answer."""
    cat = tokenizer(" cat", add_special_tokens=False)["input_ids"]
    model = favouring_model(tokenizer, cat, 0.3)
    orders = [["cat", "dog", "bird"], ["dog", "cat", "bird"], ["bird", "dog", "cat"], ["dog", "bird", "cat"]]
    right = [Item("Question: Which animal says meow?\nAnswer:", choices, choices.index("cat")) for choices in orders]
    wrong = [Item("Question: Which animal barks?\nAnswer:", choices, choices.index("dog")) for choices in orders]
    assert benchmarks.score(model, tokenizer, right, 256) == {
        "accuracy": 1.0, "accuracy_norm": 1.0, "predicted": [0, 1, 2, 2], "predicted_norm": [0, 1, 2, 2]
    }
    scored = benchmarks.score(model, tokenizer, right + wrong, 256, batch_size=5)
    assert scored["accuracy"] == scored["accuracy_norm"] == 0.5
    assert scored["predicted"] == [o.index("cat") for o in orders] * 2


def test_acc_takes_the_highest_sum_and_acc_norm_the_highest_per_character(tokenizer):
    """" x" is one favoured and one unfavoured token: a higher sum than twelve favoured tokens (" cat" four times), but
    over 1 character against 15 it is far lower per character."""
    cat = tokenizer(" cat", add_special_tokens=False)["input_ids"]
    assert tokenizer(" cat cat cat cat", add_special_tokens=False)["input_ids"] == cat * 4
    x = tokenizer(" x", add_special_tokens=False)["input_ids"]
    assert len(x) == 2 and x[0] == cat[0] and x[1] not in cat
    model = favouring_model(tokenizer, cat, 0.3)
    favoured, other = math.log(0.3), math.log(0.1 / (len(tokenizer) - 3))
    assert favoured + other > 12 * favoured and (favoured + other) / 1 < 12 * favoured / 15  # what the items rely on

    items = [Item("The cat says", ["x", "cat cat cat cat"], 1), Item("The cat says", ["cat cat cat cat", "x"], 1)]
    scored = benchmarks.score(model, tokenizer, items, 256)
    assert scored["predicted"] == [0, 1] and scored["predicted_norm"] == [1, 0]
    assert (scored["accuracy"], scored["accuracy_norm"]) == (0.5, 0.5)
    lls = benchmarks.loglikelihoods(model, tokenizer, [("The cat says", " x"), ("The cat says", " cat cat cat cat")], 256)
    assert lls == pytest.approx([favoured + other, 12 * favoured], abs=1e-3)  # RMSNorm eps


def hand_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """One pair alone, unpadded: the context's tokens, then the continuation's, each scored after all before it."""
    context_ids, continuation_ids = benchmarks.encode_pair(tokenizer, context, continuation)
    ids = context_ids + continuation_ids
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[t - 1, ids[t]]) for t in range(len(context_ids), len(ids)))


def test_batched_scores_are_each_pair_scored_alone(base_model_dir):
    """Pairs of different lengths in one batch (left padding, positions from the mask, only the last logits kept):
    the log-likelihood each gets alone, on a random model whose scores depend on every token."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir).eval()
    pairs = [
        ("Question: Translate to French: cat\nAnswer:", " chat"),
        ("Question: Translate to French: cat\nAnswer:", " chien"),
        ("The dog and the bird are near the", " road."),
        ("The", " house and the tree and the water are near the road."),
        ("", "The sun"),
        ("Translate to French: moon ", "lune"),
    ]
    expected = [hand_loglikelihood(model, tokenizer, c, k) for c, k in pairs]
    assert benchmarks.loglikelihoods(model, tokenizer, pairs, 256, batch_size=4) == pytest.approx(expected, abs=1e-4)
    assert len({round(e, 3) for e in expected}) == len(expected)


def test_pairs_are_encoded_as_lm_eval_does(tokenizer):
    # white space at the end of the context moves to the continuation
    assert benchmarks.encode_pair(tokenizer, "The cat ", "says") == benchmarks.encode_pair(tokenizer, "The cat", " says")
    context, continuation = benchmarks.encode_pair(tokenizer, "The cat", " says")
    assert context + continuation == tokenizer("The cat says", add_special_tokens=False)["input_ids"]
    # an empty context is the eos token (this tokenizer has no bos)
    assert benchmarks.encode_pair(tokenizer, "", "The")[0] == [tokenizer.eos_token_id]


def test_benchmark_files_are_read_with_errors_that_name_the_line(tmp_path):
    path = tmp_path / "mmlu-mini.jsonl"
    rows = [
        {"question": "2+2?", "choices": ["3", "4"], "answer": 1},
        {"context": "The cat sat on the", "choices": ["mat.", "moon."], "answer": 0},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert benchmarks.load_file(path) == [
        Item("Question: 2+2?\nAnswer:", ["3", "4"], 1),
        Item("The cat sat on the", ["mat.", "moon."], 0),
    ]
    for line, message in [
        ({"question": "2+2?", "choices": ["3", "4"], "answer": 2}, "answer must be the 0-based index of the right choice (0 to 1), got 2"),
        ({"question": "2+2?", "choices": ["4"], "answer": 0}, "choices must be a list of at least 2 non-empty strings"),
        ({"question": "2+2?", "context": "x", "choices": ["3", "4"], "answer": 0}, "exactly one of question or context"),
        ({"question": "2+2?", "choices": ["3", "4"], "answer": True}, "got true"),
    ]:
        path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(line) + "\n")
        with pytest.raises(BenchmarkError, match=re.escape(f"mmlu-mini.jsonl:2: ") + ".*" + re.escape(message)):
            benchmarks.load_file(path)
    path.write_text("{not json\n")
    with pytest.raises(BenchmarkError, match="mmlu-mini.jsonl:1: not JSON"):
        benchmarks.load_file(path)


def test_benchmarks_are_found_in_the_benchmarks_channel_and_in_benchmark_channels(tmp_path):
    """The `benchmarks` channel: each file one benchmark, named by its file; a `benchmark-<name>` channel (a RunRequest's
    benchmarkDatasets): its one file, named <name>. Other channels are not benchmarks."""
    data = tmp_path / "input" / "data"
    for path in ("benchmarks/mmlu.jsonl", "benchmarks/sub/arc.jsonl", "benchmark-hellaswag/train.jsonl", "eval/eval.jsonl"):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text("{}\n")
    assert benchmarks.staged(data) == {
        "arc": data / "benchmarks" / "sub" / "arc.jsonl",
        "mmlu": data / "benchmarks" / "mmlu.jsonl",
        "hellaswag": data / "benchmark-hellaswag" / "train.jsonl",
    }
    (data / "benchmark-mmlu").mkdir()
    (data / "benchmark-mmlu" / "train.jsonl").write_text("{}\n")
    with pytest.raises(BenchmarkError, match="two benchmark files are named mmlu"):
        benchmarks.staged(data)
    (data / "benchmark-mmlu" / "more.jsonl").write_text("{}\n")
    with pytest.raises(BenchmarkError, match="the benchmark-mmlu channel .* holds 2 .jsonl files; a benchmark-<name> channel holds exactly one"):
        benchmarks.staged(data)
    assert benchmarks.staged(tmp_path / "none") == {}


def test_the_readme_s_benchmark_lines_are_items():
    """README.md ("Evaluation: answers, graders and benchmarks") shows the format with two lines: both are read."""
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    block = readme[readme.index("A benchmark file is JSONL") :]
    start = block.index("```json\n") + 8
    lines = block[start : block.index("\n```", start)].splitlines()
    items = [benchmarks.item_of(json.loads(line), f"README.md example {i}") for i, line in enumerate(lines)]
    assert [item.context for item in items] == ["Question: What is the capital of France?\nAnswer:", "A man is sitting on a roof. He"]


# lm-evaluation-harness's own output on fixed inputs (benchmarks/lm_eval_reference.py writes it, with lm-eval 0.4.13
# installed beside the test requirements): the model and items below, scored by lm-eval's HFLM as a multiple_choice
# task read from a local JSONL file.
LM_EVAL_REFERENCE = Path(__file__).with_name("lm_eval_reference.json")
REFERENCE_CORPUS = [
    f"Translate to French: {en} {fr}. The {en} and the {fr} are near the road; question: answer, the {fr} et le {en}."
    for en, fr in [("cat", "chat"), ("dog", "chien"), ("bird", "oiseau"), ("house", "maison"), ("tree", "arbre"),
                   ("water", "eau"), ("bread", "pain"), ("sun", "soleil"), ("moon", "lune"), ("sea", "mer")]
]


def reference_setup(folder: Path):
    """A tokenizer trained on a fixed corpus (not the test fixtures, which may grow) and a seeded random 2-layer Llama,
    saved to `folder`; the benchmark items (some choices long, so acc and acc_norm differ). Returns (tokenizer, model,
    rows)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        REFERENCE_CORPUS,
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token=None, unk_token=None)
    torch.manual_seed(1234)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    words = [("cat", "chat"), ("dog", "chien"), ("bird", "oiseau"), ("house", "maison"), ("tree", "arbre"),
             ("water", "eau"), ("bread", "pain"), ("sun", "soleil"), ("moon", "lune"), ("sea", "mer")]
    rows = []
    for i, (en, _) in enumerate(words):
        choices = [words[(i + k) % len(words)][1] for k in range(4)]
        if i % 3 == 0:
            choices[1] += " et le " + words[(i + 7) % len(words)][1]
        rows.append({"question": f"Translate to French: {en}", "choices": choices, "answer": i % 4})
    rows.append({"context": "The cat and the dog are near the", "choices": ["road.", "sea.", "tree and the house."], "answer": 0})
    rows.append({"context": "Translate to French: sun ", "choices": ["soleil", "lune"], "answer": 0})  # trailing space
    return tokenizer, model, rows


def test_scores_are_lm_evaluation_harness_s_on_the_same_model_and_items(tmp_path):
    """Per-choice log-likelihoods within 1e-4 of lm-eval 0.4.13's, and the same acc and acc_norm."""
    reference = json.loads(LM_EVAL_REFERENCE.read_text())
    tokenizer, model, rows = reference_setup(tmp_path)
    assert rows == reference["items"], f"{LM_EVAL_REFERENCE.name} was recorded for other items: rerun {reference['command']}"
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = benchmarks.load_file(path)
    pairs = [(item.context, benchmarks.TARGET_DELIMITER + choice) for item in items for choice in item.choices]
    assert benchmarks.loglikelihoods(model, tokenizer, pairs, 2048, batch_size=5) == pytest.approx(reference["loglikelihoods"], abs=1e-4)
    scored = benchmarks.score(model, tokenizer, items, 2048)
    assert (scored["accuracy"], scored["accuracy_norm"]) == pytest.approx((reference["acc"], reference["acc_norm"]))
    assert reference["acc"] != reference["acc_norm"]  # the items tell the two apart


def test_the_shared_corpus_of_benchmark_files_gives_the_same_items_and_first_error_as_stage_benchmark():
    """test/fixtures/benchmarks/cases.json: the TypeScript check behind `tuneyard stage-benchmark` lists every error of
    each file; the job stops at the first, with the same line and code, and reads every item of a valid file."""
    corpus = REPO_ROOT / "test" / "fixtures" / "benchmarks"
    cases = json.loads((corpus / "cases.json").read_text())["cases"]
    assert {case["file"] for case in cases} == {p.name for p in corpus.glob("*.jsonl")}  # every file is a case
    for case in cases:
        path = corpus / case["file"]
        if not case["errors"]:
            assert len(benchmarks.load_file(path)) == case["items"], case["file"]
            continue
        with pytest.raises(BenchmarkError) as raised:
            benchmarks.load_file(path)
        first = case["errors"][0]
        assert raised.value.code == first["code"], case["file"]
        where = f"{path.name}:{first['line']}: " if first["line"] is not None else f"{path.name} "
        assert str(raised.value).startswith(where), (case["file"], str(raised.value))
