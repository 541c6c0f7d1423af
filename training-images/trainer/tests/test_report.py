"""report.html and the blind A/B sheet, rendered from what the eval job really writes: the shared LoRA run (its
training_history.json) evaluated with graders and a benchmark, and the eval.json fixtures the other tests wrote."""

import csv
import io
import json
import os
import re
from html.parser import HTMLParser

import pytest
from conftest import REPO_ROOT, WORDS, sft_rows, write_jsonl

from tuneyard_trainer import report
from tuneyard_trainer.report import AB_KEY, AB_SHEET, HISTORY_FILE, REPORT_FILE

CONTRACTS = REPO_ROOT / "test" / "fixtures" / "contracts"
SECTIONS = ["summary", "curves", "graders", "benchmarks", "judge", "samples"]
# What the eval job writes in this test (eval.json, generations.jsonl, the A/B sheet and key), committed for
# `tuneyard eval` (test/cli/eval.test.ts) and the headless-browser test (test/report-render.test.ts); its report.html
# is rendered from those files with a <script> put in the first tuned answer. TUNEYARD_UPDATE_FIXTURES=1 rewrites it.
EVAL_JOB_FIXTURE = CONTRACTS / "eval-job"
HOSTILE = '<script>document.title="pwned";window.pwned=1</script><img src=x onerror="window.pwned=2">'


def eval_rows(count: int) -> list[dict]:
    """`count` translation conversations (more than the 50 a blind review needs)."""
    rows = []
    for i in range(count):
        en, fr = WORDS[i % len(WORDS)]
        other = WORDS[(i * 7 + 3) % len(WORDS)][0]
        rows.append({"messages": [
            {"role": "user", "content": f"Translate to French: {en}" + (f" and {other}" if i >= len(WORDS) else "")},
            {"role": "assistant", "content": fr},
        ]})
    return rows


class Outline(HTMLParser):
    """Section ids, script elements, svg paths and the text of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.scripts, self.handlers, self.paths, self.text = [], 0, 0, [], []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag in ("script", "img", "iframe", "object", "link"):
            self.scripts += 1
        if tag == "path":
            self.paths.append(attrs)
        self.handlers += sum(name.startswith("on") for name in attrs)
        self.in_style = tag == "style"

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if not self.in_style:
            self.text.append(data)


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, lora_run, base_model_dir):
    """The eval job on the shared LoRA run: 60 prompts, two graders, one benchmark file."""
    from conftest import Job

    checks = [
        {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"},
        {"type": "text_similarity", "name": "fuzzy", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.5},
    ]
    job = Job(tmp_path_factory.mktemp("report") / "ml", base_model_dir)
    job.configure({"max_new_tokens": 8, "graders": json.dumps(checks)}, eval=eval_rows(60))
    items = [{"question": f"Translate to French: {en}", "choices": [WORDS[(i + k) % len(WORDS)][1] for k in range(3)], "answer": 0} for i, (en, _) in enumerate(WORDS[:6])]
    write_jsonl(job.root / "input" / "data" / "benchmarks" / "translate.jsonl", items)
    (job.root / "input" / "data" / "adapter").symlink_to(lora_run.model_dir, target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure
    folder = job.model_dir
    return {
        "folder": folder,
        "eval": json.loads((folder / "eval.json").read_text()),
        "generations": report.read_jsonl(folder / "generations.jsonl"),
        "history": report.read_history(lora_run.model_dir),
        "training": lora_run,
    }


def test_training_writes_its_log_history_beside_the_model(lora_run):
    """train.py records the Trainer's log_history (train loss per logging step, eval loss per evaluation) where the
    eval job reads the model (its adapter channel), and the curves come from it."""
    document = json.loads((lora_run.model_dir / HISTORY_FILE).read_text())
    history = document["log_history"]
    curves = report.loss_curves(history)
    config = json.loads((lora_run.model_dir / "training_config.json").read_text())
    assert len(curves["train loss"]) >= 2 and len(curves["eval loss"]) >= 1
    assert curves["train loss"][-1][1] < curves["train loss"][0][1]  # the shared run learns its task
    # the last evaluation in the history is the one training_config.json reports as final
    assert curves["eval loss"][-1][1] == pytest.approx(config["final_metrics"]["eval_loss"])


def test_the_eval_job_writes_the_report_and_the_ab_sheet_beside_eval_json(evaluated):
    folder = evaluated["folder"]
    for name in (REPORT_FILE, AB_SHEET, AB_KEY):
        assert (folder / name).read_text() == (folder.parent / "output" / "data" / name).read_text()
    page = (folder / REPORT_FILE).read_text()
    assert page == report.render_report(evaluated["eval"], evaluated["generations"], evaluated["history"])
    if os.environ.get("TUNEYARD_UPDATE_FIXTURES") == "1":
        EVAL_JOB_FIXTURE.mkdir(exist_ok=True)
        for name in ("eval.json", "generations.jsonl", AB_SHEET, AB_KEY):
            (EVAL_JOB_FIXTURE / name).write_bytes((folder / name).read_bytes())
        hostile = [dict(row) for row in evaluated["generations"]]
        hostile[0]["tuned"] = HOSTILE + hostile[0]["tuned"]
        page_with_script = report.render_report(evaluated["eval"], hostile, evaluated["history"])
        (EVAL_JOB_FIXTURE / REPORT_FILE).write_text(page_with_script, encoding="utf-8")
    committed = EVAL_JOB_FIXTURE / "eval.json"
    assert report.render_report(json.loads(committed.read_text()), [], None).count("<section") == len(SECTIONS)
    parsed = outline(page)
    assert parsed.ids == SECTIONS
    assert parsed.scripts == 0
    # the judge section, between the markers JudgeAnswers replaces (judge-report.ts), once each, around it
    begin, end = page.index(report.JUDGE_BEGIN), page.index(report.JUDGE_END)
    assert page.count(report.JUDGE_BEGIN) == page.count(report.JUDGE_END) == 1
    assert page[begin + len(report.JUDGE_BEGIN) : end].startswith('<section id="judge">')
    assert page[begin + len(report.JUDGE_BEGIN) : end].endswith("</section>")
    text = "".join(parsed.text)
    assert "judge: not run yet / not configured" in text
    for grader in ("exact", "fuzzy"):  # each grader's mean, both sides, as eval.json has it
        for side in ("base", "tuned"):
            assert report._number(evaluated["eval"]["graders"][side][grader]["mean"]) in text
    bench = evaluated["eval"]["benchmarks"][0]
    assert "translate" in text and report._number(bench["tuned_accuracy"]) in text


def test_the_loss_chart_draws_every_logged_point(evaluated):
    curves = report.loss_curves(evaluated["history"])
    page = report.render_report(evaluated["eval"], evaluated["generations"], evaluated["history"])
    series = {p["data-series"]: p["d"] for p in outline(page).paths if p.get("class") == "series"}
    assert set(series) == {"train loss", "eval loss"}
    for name, points in curves.items():
        assert len(re.findall(r"[ML][\d.]+,[\d.]+", series[name])) == len(points)


def test_score_histograms_count_every_graded_answer(evaluated):
    page = report.render_report(evaluated["eval"], evaluated["generations"], evaluated["history"])
    bars = [(p["data-series"], p["d"].count("M")) for p in outline(page).paths if p.get("class") == "bars"]
    expected = []  # one histogram per grader (exact, fuzzy), a bar path per side with one bar per non-empty bin
    for grader in ("exact", "fuzzy"):
        for side in ("base", "tuned"):
            scores = [row[f"{side}_scores"][grader] for row in evaluated["generations"]]
            assert len(scores) == 60 and None not in scores
            expected.append((side, len({min(int(score / 0.1), 9) for score in scores})))
    assert bars == expected


def test_samples_are_ordered_worst_regression_first(evaluated):
    generations = evaluated["generations"]
    ordered, how = report.ordered_samples(generations)
    changes = [report.score_change(row) for row in ordered]
    assert "score change" in how and None not in changes
    assert changes == sorted(changes)
    expected = [(sum(r["tuned_scores"][n] - r["base_scores"][n] for n in ("exact", "fuzzy")) / 2) for r in ordered]
    assert changes == pytest.approx(expected)
    # the page shows them in that order
    page = report.render_report(evaluated["eval"], generations, evaluated["history"])
    shown = [int(i) for i in re.findall(r'<div class="muted">item (\d+)', page)]
    assert shown == [row["index"] for row in ordered[: report.MAX_SAMPLES]]


def test_without_graders_tuned_answers_that_never_stop_come_first():
    rows = [
        {"index": 0, "prompt": "a", "base": "x", "tuned": "x", "base_tokens": 2, "tuned_tokens": 2, "base_stopped": True, "tuned_stopped": True},
        {"index": 1, "prompt": "b", "base": "x", "tuned": "xxxx", "base_tokens": 2, "tuned_tokens": 9, "base_stopped": True, "tuned_stopped": True},
        {"index": 2, "prompt": "c", "base": "x", "tuned": "runs on", "base_tokens": 2, "tuned_tokens": 8, "base_stopped": True, "tuned_stopped": False},
    ]
    ordered, how = report.ordered_samples(rows)
    assert [r["index"] for r in ordered] == [2, 1, 0] and "did not stop" in how


def test_answers_are_escaped_so_a_script_in_an_answer_is_inert(evaluated):
    generations = [dict(row) for row in evaluated["generations"]]
    generations[0]["tuned"] = HOSTILE
    generations[1]["prompt"] = [{"role": "user", "content": "</pre></section><script>alert(1)</script>"}]
    generations[2]["base_scores"] = {**generations[2]["base_scores"], '<b onmouseover="x">': 0.5}
    page = report.render_report(evaluated["eval"], generations, evaluated["history"], {"wins": 1, "ties": 0, "losses": 0, "items": [{"item": "<i>1</i>", "verdict": "tuned", "reasoning": "<script>x()</script>"}]})
    parsed = outline(page)
    assert parsed.scripts == 0 and parsed.handlers == 0 and "<script" not in page.lower()
    assert parsed.ids == SECTIONS  # the closing tags in the prompt did not end the section
    assert HOSTILE in "".join(parsed.text)  # shown as text, as the model wrote it


def test_the_ab_sheet_is_blind_and_its_key_maps_back(evaluated):
    folder, generations = evaluated["folder"], evaluated["generations"]
    sheet = list(csv.DictReader(io.StringIO((folder / AB_SHEET).read_text())))
    key = {row["item"]: row for row in csv.DictReader(io.StringIO((folder / AB_KEY).read_text()))}
    assert len(sheet) == len(generations) == 60
    assert "tuned" not in (folder / AB_SHEET).read_text().splitlines()[0] and "base" not in (folder / AB_SHEET).read_text().splitlines()[0]
    by_item = {f"item-{row['index']}": row for row in generations}
    tuned_is = []
    for row in sheet:
        truth = by_item[row["item"]]
        letter = key[row["item"]]["tuned"]
        other = key[row["item"]]["base"]
        assert {letter, other} == {"A", "B"}
        assert row[f"answer_{letter.lower()}"].lstrip("'") == truth["tuned"]
        assert row[f"answer_{other.lower()}"].lstrip("'") == truth["base"]
        assert row["prompt"] == report.prompt_text(truth["prompt"])
        tuned_is.append(letter)
    assert 10 < tuned_is.count("A") < 50  # shuffled per item, not all on one side
    assert {row["seed"] for row in key.values()} == {str(report.DEFAULT_AB_SEED)}  # recorded
    # seeded: the same seed draws the same order, another seed another
    assert report.ab_sheets(generations) == ((folder / AB_SHEET).read_text(), (folder / AB_KEY).read_text())
    assert report.ab_sheets(generations, seed=1)[1] != (folder / AB_KEY).read_text()


def test_generations_with_line_separators_inside_answers_are_read_back(tmp_path):
    """A random model writes any character: U+2028, U+0085 and \x1c stay raw inside generations.jsonl's strings."""
    rows = [{"index": i, "tuned": f"a{ch}b", "base": "c"} for i, ch in enumerate("\u2028\x85\x1c\r")]
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    assert report.read_jsonl(path) == rows


def test_a_cell_that_would_run_as_a_formula_is_quoted():
    rows = [{"index": 0, "prompt": "p", "reference": "r", "base": "=HYPERLINK(\"http://x\")", "tuned": "+1", "base_tokens": 1, "tuned_tokens": 1}]
    sheet = list(csv.reader(io.StringIO(report.ab_sheets(rows)[0])))[1]
    assert sorted(sheet[3:5]) == ["'+1", "'=HYPERLINK(\"http://x\")"]


def test_the_judge_section_shows_wins_ties_and_losses_when_the_judge_ran(evaluated):
    judged = report.render_report(evaluated["eval"], evaluated["generations"], evaluated["history"], {"pairwise": {"items": 60, "wins": 30, "ties": 10, "losses": 20, "winRate": 0.5}})
    text = "".join(outline(judged).text)
    assert "not run yet" not in text
    assert re.search(r"tuned wins.*ties.*tuned loses.*30\s*10\s*20\s*0\.5(?!\d)", text, re.S)


@pytest.mark.parametrize(
    "name",
    ["eval-report.json", "eval-report-probe.json", "eval-report-dpo.json", "eval-report-benchmarks.json",
     "eval-report-grpo.json", "eval-report-rloo.json"],
)
def test_every_committed_eval_json_renders_with_every_section(name):
    """The eval.json fixtures the evaluate tests wrote (with and without probe, DPO, graders, benchmarks, the reward of
    a grpo and an rloo run), without generations or a history: each section still says what it has."""
    document = json.loads((CONTRACTS / name).read_text())
    parsed = outline(report.render_report(document, [], None))
    assert parsed.ids == SECTIONS
    text = "".join(parsed.text)
    assert "No training history" in text and "No generations" in text
    if document.get("preference"):
        assert "DPO preference accuracy" in text
    reward = document.get("reward")
    assert ("mean reward (the run's)" in text) == (reward is not None)
    if reward:
        gain = report._number(reward["gain"])
        assert re.search(rf"reward gain \(tuned - base\): {re.escape(gain)} over {reward['rows']} answers; sources "
                         rf"{re.escape(next(iter(reward['sources'])))} x1", text), text


def test_the_line_chart_maps_points_onto_the_axes():
    svg = report.line_chart({"a": [(0, 0.0), (10, 1.0)], "b": []}, {"a": "#000", "b": "#111"}, "step", "loss", 640, 280)
    d = re.search(r'data-series="a" d="([^"]+)"', svg).group(1)
    assert d == "M60.0,240.0 L624.0,36.0"  # (0, 0) at the origin's corner, (10, 1) at the far corner
    assert 'data-series="b"' not in svg
    with pytest.raises(ValueError, match="at least one finite"):
        report.line_chart({"a": []}, {"a": "#000"}, "step", "loss")


def test_the_histogram_counts_each_value_once():
    values = {"base": [0.0, 0.05, 0.5, 1.0], "tuned": [1.0, 1.0, 0.95]}
    svg = report.histogram(values, {"base": "#000", "tuned": "#111"}, "score", bins=10)
    for name, expected in (("base", 3), ("tuned", 1)):  # bars: base bins 0, 5 and 9; tuned bin 9
        d = re.search(rf'data-series="{name}" d="([^"]+)"', svg).group(1)
        assert d.count("M") == expected
