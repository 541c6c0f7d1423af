"""Records lm-evaluation-harness's own scores for the fixed model and items of the trainer test
`test_scores_are_lm_evaluation_harness_s_on_the_same_model_and_items` (tests/test_benchmarks.py: reference_setup), so
that test checks tuneyard_trainer.benchmarks against the reference library without it in the image or the test
requirements.

lm-eval runs here as a user would run it offline: HFLM over the already-loaded model, a multiple_choice task defined
as a dict (doc_to_text "Question: {{question}}\\nAnswer:" or the context, doc_to_choice the choices, target_delimiter
" ", metrics acc and acc_norm) reading the items from a local JSONL file.

    python -m venv /tmp/lmeval && echo "$(<test venv>/bin/python -c 'import site; print(site.getsitepackages()[0])')" \\
        > /tmp/lmeval/lib/python3.11/site-packages/test-venv.pth
    /tmp/lmeval/bin/pip install lm-eval==0.4.13 -c training-images/trainer/requirements.txt
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 /tmp/lmeval/bin/python benchmarks/lm_eval_reference.py

Writes training-images/trainer/tests/lm_eval_reference.json.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "training-images" / "trainer" / "tests"
sys.path.insert(0, str(TESTS.parent))
sys.path.insert(0, str(TESTS))

import lm_eval  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from test_benchmarks import LM_EVAL_REFERENCE, reference_setup  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer, model, rows = reference_setup(folder)
        path = folder / "mc.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = {
            "task": "tuneyard_reference",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(path)}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{% if context is defined and context %}{{context}}{% else %}Question: {{question}}\nAnswer:{% endif %}",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        }
        out = lm_eval.simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu"), tasks=[task], log_samples=True
        )
    results = out["results"]["tuneyard_reference"]
    samples = sorted(out["samples"]["tuneyard_reference"], key=lambda s: s["doc_id"])
    loglikelihoods = [float(response[0][0]) for sample in samples for response in sample["resps"]]
    record = {
        "description": "lm-evaluation-harness's scores of reference_setup's model and items (tests/test_benchmarks.py)",
        "command": "benchmarks/lm_eval_reference.py",
        "versions": {p: importlib.metadata.version(p) for p in ("lm_eval", "torch", "transformers", "tokenizers")},
        "items": rows,
        "loglikelihoods": loglikelihoods,
        "acc": results["acc,none"],
        "acc_norm": results["acc_norm,none"],
    }
    LM_EVAL_REFERENCE.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {LM_EVAL_REFERENCE}: {len(loglikelihoods)} choices, acc {record['acc']}, acc_norm {record['acc_norm']}")


if __name__ == "__main__":
    main()
