"""Graders: the shared fixtures (lib/graders.test.ts runs the same files and must agree), and each grader's scores on
small cases whose values are worked out here by hand (n-gram counts, LCS, edit distance, a confusion matrix)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import REPO_ROOT, build_tokenizer

from tuneyard_trainer import graders
from tuneyard_trainer.graders import GradersError, from_hyperparameters, grade_rows, label_metrics, load

FIXTURES = REPO_ROOT / "test" / "fixtures" / "graders"
OUT = "{{ sample.output_text }}"
REF = "{{ item.reference }}"


def fixtures(kind: str):
    return [pytest.param(json.loads(path.read_text()), id=path.name) for path in sorted((FIXTURES / kind).glob("*.json"))]


def one(config: dict, output: str, item: dict | None = None) -> float:
    return load([config])[0].grade({"output_text": output}, item if item is not None else {})


def similarity(metric: str, output: str, reference: str) -> float:
    return one({"type": "text_similarity", "name": metric, "input": OUT, "reference": REF, "evaluation_metric": metric}, output, {"reference": reference})


# ---------------------------------------------------------------------------------------------------------------------
# Validation: the shared fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", fixtures("good"))
def test_good_fixtures_are_accepted_and_load(fixture):
    loaded = load(fixture["graders"])
    assert [g.name for g in loaded] == [g["name"] for g in fixture["graders"]]


@pytest.mark.parametrize("fixture", fixtures("bad"))
def test_bad_fixtures_are_refused_at_exactly_their_paths(fixture):
    found = graders.problems(fixture["graders"])
    assert sorted({path for path, _ in found}) == sorted(fixture["problems"])
    with pytest.raises(GradersError) as refused:
        load(fixture["graders"], where="graders.json")
    for path, message in found:
        assert f"graders.json{path}: {message}" in str(refused.value)


def test_refusals_name_the_fix_with_did_you_mean():
    with pytest.raises(GradersError) as refused:
        load([{"type": "strng_check"}, {"type": "string_check", "name": "x", "input": "{{ sample.output_txt }}", "reference": REF, "operaton": "eq"}])
    message = str(refused.value)
    assert 'graders[0].type: must be a grader type: ' in message and 'did you mean "string_check"?' in message
    assert 'graders[1].operaton: unknown field; did you mean "operation"?' in message
    assert "graders[1].operation: missing; must be eq (equal), ne (not equal), like (input contains reference) or ilike" in message
    with pytest.raises(GradersError, match=r'graders\[0\]\.input: "sample\.output_txt" is not a field of the sample; did you mean "sample\.output_text"\?'):
        load([{"type": "string_check", "name": "x", "input": "{{ sample.output_txt }}", "reference": REF, "operation": "eq"}])


def test_python_syntax_errors_are_refused_before_any_row_is_graded():
    # (lib/graders.ts cannot parse Python: it checks only that grade() is defined; the job refuses the rest at load)
    with pytest.raises(GradersError, match=r"graders\[0\]\.source: is not valid Python \(line 2: "):
        load([{"type": "python", "name": "p", "source": "def grade(sample, item):\nreturn 1\n"}])


def test_a_json_schema_grader_whose_schema_is_not_a_json_schema_is_refused():
    with pytest.raises(GradersError, match=r"graders\[0\]\.schema: is not a valid JSON Schema: "):
        load([{"type": "json_schema", "name": "j", "input": OUT, "schema": {"type": "objekt"}}])


def test_the_evaluation_job_reads_its_graders_hyperparameter():
    multi = json.loads((FIXTURES / "good" / "openai-multi.json").read_text())["graders"]
    compact = json.dumps(multi, separators=(",", ":"))  # as PlanRun writes it (JSON.stringify)
    assert [g.name for g in from_hyperparameters({"base_model": "s3://b/base-models/m/", "graders": compact})] == ["example multigrader"]
    assert [g.type for g in from_hyperparameters({"graders": json.dumps(compact)})] == ["multi"]
    assert from_hyperparameters({"method": "lora"}) == []
    with pytest.raises(GradersError, match=r"hyperparameter graders: is not JSON \(Expecting value at character 0\)"):
        from_hyperparameters({"graders": "not json"})
    with pytest.raises(GradersError, match=r"hyperparameter graders\[0\]\.operation: must be eq"):
        from_hyperparameters({"graders": '[{"type":"string_check","name":"x","input":"a","reference":"b","operation":"is"}]'})


# ---------------------------------------------------------------------------------------------------------------------
# Scores, worked out by hand
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, output, reference, expected",
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "Paris ", "Paris", 0.0),
        ("ne", "Paris", "Lyon", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "The answer is Paris.", "Paris", 1.0),
        ("like", "The answer is PARIS.", "Paris", 0.0),
        ("ilike", "The answer is PARIS.", "paris", 1.0),
        ("ilike", "The answer is Lyon.", "paris", 0.0),
    ],
)
def test_string_check_operations(operation, output, reference, expected):
    config = {"type": "string_check", "name": "s", "input": OUT, "reference": REF, "operation": operation}
    assert one(config, output, {"reference": reference}) == expected


HYP, REF_TEXT = "the cat sat on the mat today", "the cat sat on the mat"


def test_bleu_identical_is_one_and_a_known_pair_matches_the_ngram_counts():
    assert similarity("bleu", "the quick brown fox jumps", "the quick brown fox jumps") == pytest.approx(1.0)
    # 1..4-gram precisions 6/7, 5/6, 4/5, 3/4; the hypothesis is longer (no brevity penalty): BLEU = (3/7) ** (1/4)
    assert similarity("bleu", HYP, REF_TEXT) == pytest.approx((6 / 7 * 5 / 6 * 4 / 5 * 3 / 4) ** 0.25)
    assert similarity("bleu", "completely different words here", REF_TEXT) < 0.05


def test_gleu_is_the_smaller_of_ngram_precision_and_recall():
    # 1..4-grams: 22 in the hypothesis, 18 in the reference, 18 shared: min(18/22, 18/18)
    assert similarity("gleu", HYP, REF_TEXT) == pytest.approx(18 / 22)
    assert similarity("gleu", REF_TEXT, REF_TEXT) == pytest.approx(1.0)


def test_rouge_l_and_rouge_n_f_measures():
    # LCS 6: P = 6/7, R = 6/6, F = 12/13; bigrams: 5 of 6 hypothesis bigrams in the 5 reference bigrams: F = 10/11
    assert similarity("rouge_l", HYP, REF_TEXT) == pytest.approx(12 / 13)
    assert similarity("rouge_2", HYP, REF_TEXT) == pytest.approx(10 / 11)
    assert similarity("rouge_1", "a b c d", "e f g h") == 0.0


# NLTK's own examples (nltk.translate.meteor_score's docstrings): single_meteor_score(reference1, hypothesis1) and
# meteor_score([reference1, reference2, reference3], hypothesis1) are 0.6944; a hypothesis sharing no word is 0.0.
METEOR_HYPOTHESIS1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
METEOR_REFERENCES = [
    "It is a guide to action that ensures that the military will forever heed Party commands",
    "It is the guiding principle which guarantees the military forces always being under the command of the Party",
    "It is the practical guide for the army always to heed the directions of the party",
]


def test_meteor_matches_nltks_documented_figures_over_the_packaged_wordnet():
    from nltk.translate.meteor_score import meteor_score

    assert round(similarity("meteor", METEOR_HYPOTHESIS1, METEOR_REFERENCES[0]), 4) == 0.6944
    assert similarity("meteor", "non matching hypothesis", "this is a cat") == 0.0
    references = [reference.split() for reference in METEOR_REFERENCES]
    assert round(meteor_score(references, METEOR_HYPOTHESIS1.split(), wordnet=graders.wordnet()), 4) == 0.6944
    # The reader is WordNet 3.0 from the wordnet-base package, with the lexnames shipped beside graders.py
    reader = graders.wordnet()
    assert reader.get_version() == "3.0"
    assert reader.synset("dog.n.01").lexname() == "noun.animal" and reader.synset("run.v.01").lexname() == "verb.motion"


def test_meteor_matches_synonyms_through_wordnet():
    # "auto" and "car" share WordNet's synset car.n.01 (and Porter's stemmer leaves both as they are, which NLTK's
    # synonym stage needs: it compares the stems left unmatched): 4 of 4 unigrams match in one chunk, so P = R = 1,
    # Fmean = PR / (0.9P + 0.1R) = 1, penalty = 0.5 * (1 chunk / 4 matches) ** 3, METEOR = 1 - 0.5 / 64.
    assert similarity("meteor", "the auto is red", "the car is red") == pytest.approx(1 - 0.5 / 64)
    # Without a synonym, 3 of 4 match in 2 chunks ("the", "is red"): Fmean = 3/4, penalty = 0.5 * (2/3) ** 3
    assert similarity("meteor", "the lorry is red", "the car is red") == pytest.approx(0.75 * (1 - 0.5 * (2 / 3) ** 3))


def test_meteor_without_wordnet_fails_the_row_naming_the_package(tmp_path, monkeypatch):
    graders.wordnet.cache_clear()
    monkeypatch.setenv(graders.WORDNET_ENV, str(tmp_path))
    try:
        with pytest.raises(graders.GradeError, match=rf"meteor needs WordNet 3.0's dict files in {tmp_path} \(data.noun, .*missing\): install Debian/Ubuntu's wordnet-base package"):
            similarity("meteor", "the auto is red", "the car is red")
    finally:
        graders.wordnet.cache_clear()


def test_fuzzy_match_is_the_normalised_indel_similarity():
    # one insertion over 14 + 15 characters: 1 - 1/29
    assert similarity("fuzzy_match", "this is a test!", "this is a test") == pytest.approx(28 / 29)


def test_json_schema_grader_passes_valid_json_only():
    config = {
        "type": "json_schema",
        "name": "order",
        "input": OUT,
        "schema": {"type": "object", "required": ["id", "qty"], "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}},
    }
    assert one(config, '{"id": "A1", "qty": 2}') == 1.0
    assert one(config, '{"id": "A1", "qty": 0}') == 0.0
    assert one(config, '{"id": "A1"}') == 0.0
    assert one(config, "Sure! Here is the order: {") == 0.0


def test_regex_grader_searches_with_flags_and_python_named_groups():
    config = {"type": "regex", "name": "id", "input": OUT, "pattern": r"(?P<p>ord)-\d{4}\b", "flags": "i"}
    assert one(config, "Your order is ORD-1234.") == 1.0
    assert one(config, "Your order is ORD-12345.") == 0.0
    assert one({**config, "flags": ""}, "Your order is ORD-1234.") == 0.0


def test_templates_resolve_nested_item_fields_and_json_answers():
    config = {"type": "string_check", "name": "s", "input": "{{ sample.output_json.city }}", "reference": "{{ item.meta.cities[1] }}", "operation": "eq"}
    assert one(config, '{"city": "Lyon"}', {"meta": {"cities": ["Paris", "Lyon"]}}) == 1.0
    assert graders.render("n={{ item.n }} {{item.tags}}", {}, {"n": 3, "tags": ["a"]}) == 'n=3 ["a"]'


def test_python_grader_scores_and_its_failures_are_error_rows_not_a_crash():
    config = [
        {"type": "python", "name": "len", "source": "def grade(sample, item):\n    return len(sample['output_text']) / len(item['reference'])\n"},
        {"type": "python", "name": "raises", "source": "def grade(sample, item):\n    raise ValueError('no score for ' + item['reference'])\n"},
        {"type": "python", "name": "slow", "source": "import time\ndef grade(sample, item):\n    time.sleep(30)\n    return 1.0\n", "timeout_seconds": 0.5},
        {"type": "python", "name": "text", "source": "def grade(sample, item):\n    return 'high'\n"},
    ]
    started = time.monotonic()
    results = grade_rows(load(config), [({"output_text": "abc"}, {"reference": "abcdef"})])
    assert time.monotonic() - started < 15
    assert results["len"]["scores"] == [0.5] and results["len"]["errors"] == []
    assert results["raises"]["scores"] == [None] and results["raises"]["mean"] == 0.0
    assert results["raises"]["errors"] == [{"row": 0, "error": "grade() failed: ValueError: no score for abcdef"}]
    assert results["slow"]["errors"][0]["error"].startswith("grade() took longer than 0.5 s (timeout_seconds)")
    assert "grade() must return a finite number, got 'high'" in results["text"]["errors"][0]["error"]


def test_openais_python_grader_example_runs_unchanged_with_the_images_rapidfuzz():
    example = json.loads((FIXTURES / "good" / "openai-python.json").read_text())["graders"]
    rows = [({"output_text": "The Eiffel Tower"}, {"reference_answer": "the eiffel tower!"}), ({"output_text": "Louvre"}, {"reference_answer": "The Eiffel Tower"})]
    started = time.monotonic()
    result = grade_rows(load(example), rows)["Example python grader"]
    per_row = (time.monotonic() - started) / len(rows)
    print(f"python grader: {per_row * 1000:.0f} ms per row (a process each)")
    # WRatio after default_process (lower-case, punctuation stripped): identical strings score 100
    assert result["errors"] == [] and result["scores"][0] == 1.0 and result["scores"][1] < 0.6


def test_multi_formula_combines_its_graders():
    config = {
        "type": "multi",
        "name": "blend",
        "graders": {
            "exact": {"type": "string_check", "name": "e", "input": OUT, "reference": REF, "operation": "eq"},
            "near": {"type": "text_similarity", "name": "n", "input": OUT, "reference": REF, "evaluation_metric": "fuzzy_match"},
        },
        "calculate_output": "0.5 * exact + 0.5 * near ^ 2",
    }
    # "this is a test!" vs "this is a test": exact 0, near 28/29
    assert one(config, "this is a test!", {"reference": "this is a test"}) == pytest.approx(0.5 * (28 / 29) ** 2)
    assert one({**config, "calculate_output": "max(exact, min(1, near * 2))"}, "this is a test!", {"reference": "this is a test"}) == pytest.approx(1.0)
    divided = grade_rows(load([{**config, "calculate_output": "near / exact"}]), [({"output_text": "x"}, {"reference": "y"})])["blend"]
    assert divided["scores"] == [None] and "failed" in divided["errors"][0]["error"]


def test_the_formula_evaluator_runs_no_code():
    for formula in ["__import__('os').system('true')", "exact.__class__", "[exact]", "exact if near else 1", "exact % 2", "1_000 * exact", "0x10 * near"]:
        with pytest.raises(ValueError):
            graders.Formula(formula, ["exact", "near"])


def test_label_metrics_on_a_hand_counted_confusion():
    references = ["cat", "cat", "cat", "dog", "dog", "bird"]
    predicted = ["cat", "cat", "dog", "dog", "cat", "bird"]
    config = {"type": "label_check", "name": "animal", "input": OUT, "reference": REF, "labels": ["cat", "dog", "bird"]}
    results = grade_rows(load([config]), [({"output_text": f" {p}\n"}, {"reference": r}) for p, r in zip(predicted, references)])["animal"]
    assert results["scores"] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0] and results["passed"] == pytest.approx(4 / 6)
    metrics = results["labels"]
    # cat: tp 2, fp 1 (a dog called cat), fn 1; dog: tp 1, fp 1, fn 1; bird: tp 1
    assert metrics["per_label"]["cat"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert metrics["per_label"]["dog"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert metrics["per_label"]["bird"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert metrics["macro"] == pytest.approx({"precision": 13 / 18, "recall": 13 / 18, "f1": 13 / 18})
    outside = label_metrics(["cat", "maybe"], ["cat", "dog"], ["cat", "dog"])
    assert outside["outside_labels"] == 1 and outside["per_label"]["dog"]["recall"] == 0.0


def test_grade_rows_counts_template_errors_as_failed_rows_and_reports_the_judge_as_unavailable():
    config = [
        {"type": "string_check", "name": "s", "input": OUT, "reference": "{{ item.answer }}", "operation": "eq"},
        {"type": "score_model", "name": "judge", "model": "m", "input": [{"role": "user", "content": OUT}]},
    ]
    results = grade_rows(load(config), [({"output_text": "4"}, {"answer": "4"}), ({"output_text": "4"}, {"question": "2+2"})])
    assert results["s"]["scores"] == [1.0, None] and results["s"]["mean"] == 0.5 and results["s"]["passed"] == 0.5
    assert results["s"]["errors"] == [{"row": 1, "error": "{{ item.answer }}: the item has no answer there"}]
    assert results["judge"]["mean"] is None and "not run yet" in results["judge"]["unavailable"]


def test_cosine_is_the_cosine_of_the_staged_encoders_mean_pooled_states(tmp_path):
    import torch
    from transformers import AutoModel, BertConfig, BertModel

    folder = tmp_path / "encoder"
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    config = {"type": "text_similarity", "name": "cos", "input": OUT, "reference": REF, "evaluation_metric": "cosine", "embedding_model": str(folder)}

    # the expected figure, one text at a time (no padding): the mean of the last hidden states, then their cosine
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        a, b = (model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].mean(0) for text in ("The cat sat", "a dog ran far away"))
    expected = float(a @ b / (a.norm() * b.norm()))
    assert expected < 0.999
    assert one(config, "The cat sat", {"reference": "a dog ran far away"}) == pytest.approx(expected, abs=1e-5)
    assert one(config, "The cat sat", {"reference": "The cat sat"}) == pytest.approx(1.0, abs=1e-5)
    missing = grade_rows(load([{**config, "embedding_model": str(tmp_path / "nowhere")}]), [({"output_text": "a"}, {"reference": "b"})])["cos"]
    assert "is not a folder in the evaluation job" in missing["errors"][0]["error"]


def test_cosine_reads_the_encoder_from_the_jobs_embedding_model_channel(tmp_path, monkeypatch):
    import torch
    from transformers import BertConfig, BertModel

    # the job's embedding_model channel, as PlanRun plans it from the RunRequest's embeddingModel
    channel = tmp_path / "ml" / "input" / "data" / graders.EMBEDDING_CHANNEL
    tokenizer = build_tokenizer(channel)
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(channel)
    nested = channel / "nested"
    tokenizer.save_pretrained(nested)
    torch.manual_seed(2)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(nested)
    cosine = {"type": "text_similarity", "name": "cos", "input": OUT, "reference": REF, "evaluation_metric": "cosine"}
    row = ({"output_text": "The cat sat"}, {"reference": "a dog ran far away"})

    monkeypatch.setenv("TUNEYARD_ML_ROOT", str(tmp_path / "ml"))
    assert graders.embedding_folder() == channel and graders.embedding_folder("nested") == nested
    # without embedding_model, the channel's own model; with a relative one, that folder inside the channel: the
    # figures are those of the encoder given by its absolute folder
    by_channel = grade_rows(load([cosine]), [row])["cos"]["scores"][0]
    assert by_channel == pytest.approx(grade_rows(load([{**cosine, "embedding_model": str(channel)}]), [row])["cos"]["scores"][0])
    by_nested = grade_rows(load([{**cosine, "embedding_model": "nested"}]), [row])["cos"]["scores"][0]
    assert by_nested == pytest.approx(grade_rows(load([{**cosine, "embedding_model": str(nested)}]), [row])["cos"]["scores"][0])
    assert by_channel != pytest.approx(by_nested)

    # a job without the channel: the row's error names the RunRequest field to set
    monkeypatch.setenv("TUNEYARD_ML_ROOT", str(tmp_path / "other"))
    missing = grade_rows(load([cosine]), [row])["cos"]
    assert "the evaluation job has no embedding_model channel" in missing["errors"][0]["error"]
    assert "set the RunRequest's embeddingModel to the s3:// folder of a Hugging Face encoder staged under base-models/" in missing["errors"][0]["error"]
