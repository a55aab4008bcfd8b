"""``python -m benchmarks.run --quick`` end to end: it runs, writes its report and judges every target.
Slow (about two minutes, four real MMS included), hence the ``load`` marker; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness import ROOT

pytestmark = [pytest.mark.load, pytest.mark.integration]

TARGETS = {
    "engine_batch1_latency",
    "engine_batch8_throughput",
    "handler_inference_mxnet",
    "handler_inference_onnxruntime",
    "preprocess_jpeg_500x375",
    "preprocess_12mp_speedup",
    "serving_c8_vs_workers2",
    "serving_c16_vs_workers2",
    "serving_c1_vs_default",
    "serving_worker_cpu_c8",
    "serving_rss_vs_workers2",
}
CONFIGURATIONS = ["default", "baseline_workers2", "baseline_default"]


def test_quick_benchmark_writes_the_report(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
    assert {t["name"] for t in report["targets"]} == TARGETS
    for t in report["targets"]:
        assert isinstance(t["passed"], bool)
        assert t["passed"] or "missed_by_percent" in t
    assert {"onnxruntime", "mxnet_optimized", "mxnet_imported", "gluon_zoo"} <= set(report["engines"])
    for name, engine in report["engines"].items():
        if name != "gluon_zoo":
            assert engine["max_abs_diff_vs_onnxruntime"] <= 1e-4, name
    serving = report["serving"]
    assert [(r["concurrency"], r["config"]) for r in serving["rows"]] == [
        (clients, config) for clients in (1, 8, 16) for config in CONFIGURATIONS
    ]
    for served in serving["rows"]:
        assert served["errors"] == 0, served
        assert len(served["runs_requests_per_s"]) == 2  # two cycles, alternated
        assert served["requests_per_s"] > 0 and served["worker_cpu_ms_per_request"] > 0
    assert set(serving["rss_mb_after_max_concurrency"]) == set(CONFIGURATIONS)
    stages = serving["stage_costs"]["cpu_ms_per_request"]
    assert {"protocol_decode", "image_decode", "inference", "json_encode"} <= set(stages)
    assert serving["stage_costs"]["threads"] == 1
    assert set(report["startup"]) == {"inprocess", "mms"}
    assert "engine" in proc.stdout and "target" in proc.stdout
