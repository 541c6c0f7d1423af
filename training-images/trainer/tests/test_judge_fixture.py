"""generations.jsonl as the pipeline's LLM judge reads it (constructs/fine-tuning-pipeline/handler/judge-answers.ts):
the evaluation job run on the rigged base ("chat") and adapter ("dhat") with a score_model and a label_model grader
(validated here, run by the judge after the job). The file is the contract fixture the judge's tests read;
TUNEYARD_UPDATE_FIXTURES=1 rewrites it."""

import json
import os

from conftest import REPO_ROOT, WORDS, sft_rows
from test_generate import rigged  # noqa: F401 (the module's fixture)

FIXTURE = REPO_ROOT / "test" / "fixtures" / "contracts" / "generations.jsonl"

JUDGED = [
    {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}", "reference": "{{ item.reference }}", "operation": "eq"},
    {
        "type": "score_model", "name": "quality", "model": "judge", "range": [1, 5], "pass_threshold": 4,
        "input": [
            {"role": "system", "content": "Rate the French translation from 1 to 5."},
            {"role": "user", "content": "Expected: {{ item.reference }}\nAnswer: {{ sample.output_text }}"},
        ],
    },
    {
        "type": "label_model", "name": "is_french", "model": "judge", "labels": ["french", "other"], "passing_labels": ["french"],
        "input": [{"role": "user", "content": "Is this a French word? {{ sample.output_text }}"}],
    },
]


def shape(row: dict) -> dict:
    return {key: type(value).__name__ for key, value in row.items()}


def test_generations_for_the_judge_have_both_answers_and_the_reference(make_job, rigged):  # noqa: F811
    job = make_job("judged").configure({"graders": json.dumps(JUDGED), "max_new_tokens": 8}, eval=sft_rows()[:4])
    (job.root / "input" / "data" / "model").unlink()
    (job.root / "input" / "data" / "model").symlink_to(rigged["root"] / "base", target_is_directory=True)
    (job.root / "input" / "data" / "adapter").symlink_to(rigged["root"] / "trained" / "model", target_is_directory=True)
    assert job.run("evaluate") == 0, job.failure

    text = (job.model_dir / "generations.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert [row["base"] for row in rows] == ["chat"] * 4 and [row["tuned"] for row in rows] == ["dhat"] * 4
    assert [row["reference"] for row in rows] == [fr for _, fr in WORDS[:4]]
    assert all(row["prompt"][-1]["role"] == "user" for row in rows)
    # the judge's graders are not run in the job: no score for them (the string_check is)
    assert [row["base_scores"]["exact"] for row in rows] == [1.0, 0.0, 0.0, 0.0]
    assert all(row["base_scores"].get("quality") is None for row in rows)
    if os.environ.get("TUNEYARD_UPDATE_FIXTURES") == "1":
        FIXTURE.write_text(text, encoding="utf-8")
    committed = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert [shape(row) for row in committed] == [shape(row) for row in rows], f"{FIXTURE} is stale: rerun with TUNEYARD_UPDATE_FIXTURES=1"
