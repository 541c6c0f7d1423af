"""benchmarks/trainer_throughput.py in its smoke mode: it runs here and reports every field (no timing is checked)."""

import json
import subprocess
import sys

from conftest import REPO_ROOT


def test_the_throughput_benchmark_reports_tokens_memory_and_the_ratio_to_trl_defaults(tmp_path):
    out = tmp_path / "results.json"
    process = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "trainer_throughput.py"), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"] and report["commit"]
    results = {r["setup"]: r for r in report["results"]}
    assert set(results) == {"tuneyard", "trl-defaults"}
    assert results["tuneyard"]["batching"] == "padding-free" and results["tuneyard"]["attention"] == "sdpa_varlen"
    assert results["trl-defaults"]["batching"] == "padded"
    for result in results.values():
        assert result["tokens"] > 0 and result["tokens_per_second"] > 0 and result["tokens_per_cpu_second"] > 0
        assert result["peak_rss_mib"] > 0 and result["params"] > 0
    # the same rows, masks and order: the same tokens trained and (nearly) the same losses
    assert results["tuneyard"]["tokens"] == results["trl-defaults"]["tokens"]
    assert abs(results["tuneyard"]["mean_loss"] - results["trl-defaults"]["mean_loss"]) < 1e-2
    table = process.stdout
    assert "| smoke |" in table and "x trl-defaults" in table and "1.00x" in table
