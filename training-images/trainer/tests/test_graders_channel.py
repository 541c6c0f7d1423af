"""The evaluation job reads the run's graders from its `graders` channel: graders.json as the pipeline's PlanRun writes
it (test/fixtures/contracts/graders-file/graders.json, written by constructs/fine-tuning-pipeline/handler/
plan-run-graders.test.ts: a string_check grader and a python grader of more than 2,500 characters, more than a
hyperparameter holds). Jobs planned before the channel still pass the `graders` hyperparameter."""

import json
import shutil

import pytest
from conftest import REPO_ROOT, sft_rows

from tuneyard_trainer import evaluate, graders
from tuneyard_trainer.sagemaker_env import ChannelError, SageMakerEnv

GRADERS_FILE = REPO_ROOT / "test" / "fixtures" / "contracts" / "graders-file" / "graders.json"
EXACT = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"}


def lcs_share(answer: str, reference: str) -> float:
    """The python grader's score, computed here another way (difflib would not give the LCS)."""
    table = [[0] * (len(reference) + 1) for _ in range(len(answer) + 1)]
    for i, a in enumerate(answer):
        for j, r in enumerate(reference):
            table[i + 1][j + 1] = table[i][j] + 1 if a == r else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1] / len(reference) if reference else 0.0


def channel_env(tmp_path, files: dict[str, bytes]) -> SageMakerEnv:
    folder = tmp_path / "input" / "data" / "graders"
    folder.mkdir(parents=True)
    for name, body in files.items():
        (folder / name).write_bytes(body)
    return SageMakerEnv(tmp_path)


def test_the_graders_channel_holds_the_graders_planrun_wrote_with_a_long_python_grader(tmp_path):
    written = json.loads(GRADERS_FILE.read_text())
    assert len(written[1]["source"]) > 2500  # more than a hyperparameter value holds
    env = channel_env(tmp_path, {"graders.json": GRADERS_FILE.read_bytes()})
    loaded = evaluate.run_graders(env, {"base_model": "m"})
    assert [(g.name, g.type) for g in loaded] == [("exact", "string_check"), ("overlap", "python")]
    rows = [({"output_text": "chien"}, {"reference": "chien"}), ({"output_text": "chat"}, {"reference": "chien"}), ({"output_text": "x"}, {"reference": ""})]
    results = graders.grade_rows(loaded, rows)
    assert results["overlap"]["scores"] == pytest.approx([lcs_share(s["output_text"], i["reference"]) for s, i in rows])
    assert results["overlap"]["scores"] == pytest.approx([1.0, 0.4, 0.0])
    assert results["exact"]["scores"] == [1.0, 0.0, 0.0]


def test_a_job_planned_before_the_channel_still_reads_the_graders_hyperparameter(tmp_path):
    loaded = evaluate.run_graders(SageMakerEnv(tmp_path), {"graders": json.dumps([EXACT])})
    assert [g.name for g in loaded] == ["exact"]
    assert evaluate.run_graders(SageMakerEnv(tmp_path), {}) == []


def test_fails_when_the_job_has_both_the_channel_and_the_hyperparameter(tmp_path):
    env = channel_env(tmp_path, {"graders.json": GRADERS_FILE.read_bytes()})
    with pytest.raises(ChannelError, match=r"both a graders channel and a graders hyperparameter.*pass the graders one way"):
        evaluate.run_graders(env, {"graders": json.dumps([EXACT])})


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({"graders.json": b"[", "other.json": b"[]"}, ChannelError, r"must hold exactly one \.json file \(graders\.json\), found \['graders\.json', 'other\.json'\]"),
        ({"graders.txt": b"[]"}, ChannelError, r"must hold exactly one \.json file"),
        ({"graders.json": b"[{"}, graders.GradersError, r"channel graders \(graders\.json\): is not UTF-8 JSON \(.*\); it must be the graders list as JSON"),
        ({"graders.json": b"\xff\xfe"}, graders.GradersError, r"is not UTF-8 JSON"),
        ({"graders.json": json.dumps([{**EXACT, "operation": "is"}]).encode()}, graders.GradersError, r"channel graders \(graders\.json\)\[0\]\.operation: must be eq"),
        ({"graders.json": b"[" + b" " * evaluate.GRADERS_FILE_MAX_BYTES + b"]"}, graders.GradersError, r"is 65538 bytes, over the 65536 a run's graders may take"),
    ],
)
def test_fails_on_a_graders_channel_that_is_not_one_valid_graders_file(tmp_path, files, error, message):
    with pytest.raises(error, match=message):
        evaluate.run_graders(channel_env(tmp_path, files), {})


def test_the_eval_job_grades_with_the_graders_of_its_channel(make_job, lora_run):
    """The whole eval job, its graders from the channel only: both graders score every answer in generations.jsonl."""
    job = make_job("graders-channel").configure({"max_new_tokens": 8}, eval=sft_rows()[:3])
    (job.root / "input" / "data" / "adapter").symlink_to(lora_run.model_dir, target_is_directory=True)
    (job.root / "input" / "data" / "graders").mkdir(parents=True)
    shutil.copy(GRADERS_FILE, job.root / "input" / "data" / "graders" / "graders.json")
    assert job.run("evaluate") == 0, job.failure
    report = json.loads((job.model_dir / "eval.json").read_text())
    written = [json.loads(line) for line in (job.model_dir / "generations.jsonl").read_text().splitlines()]
    assert len(written) == 3
    for side in ("base", "tuned"):
        overlap = [lcs_share(row[side], row["reference"]) for row in written]
        assert [row[f"{side}_scores"]["overlap"] for row in written] == pytest.approx(overlap)
        assert report["graders"][side]["overlap"]["mean"] == pytest.approx(sum(overlap) / 3)
        assert report["graders"][side]["exact"]["graded"] == 3
