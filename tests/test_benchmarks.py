"""``python -m benchmarks.run --quick`` end to end: it runs, writes its report and judges every target.
Slow (about a minute and a half, a real MMS included), hence the ``load`` marker; no timing is asserted."""

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
    "end_to_end_batching_c8",
}


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
    one_worker = [r for r in report["end_to_end"]["mms"] if r["workers"] == 1]
    assert [(r["batching"], r["concurrency"]) for r in one_worker] == [
        (False, 1),
        (False, 8),
        (False, 16),
        (True, 1),
        (True, 8),
        (True, 16),
    ]
    assert all(r["errors"] == 0 for r in report["end_to_end"]["mms"])
    assert set(report["startup"]) == {"inprocess", "mms"}
    assert "engine" in proc.stdout and "target" in proc.stdout
