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
# Issue 23's, when .venv-torchserve is there (benchmarks/parity.py): `serve` next to TorchServe + ORT.
PARITY_TARGETS = {
    "parity_start_s",
    "parity_start_vs_ts",
    "parity_c1_p99_vs_ts",
    "parity_c1_cpu_vs_ts",
    "parity_c8_vs_ts",
    "parity_c16_vs_ts",
    "parity_ort_c1_cpu_vs_mxnet",
    "parity_ort_c8_vs_ts",
}
PARITY_CONFIGURATIONS = [
    "now",
    "now_mms_direct",
    "now_onnxruntime",
    "before",
    "before_onnxruntime",
    "torchserve_tuned",
    "torchserve_default",
]


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
    parity = report["parity"]
    with_torchserve = parity["torchserve_missing"] is None
    assert {t["name"] for t in report["targets"]} == TARGETS | (PARITY_TARGETS if with_torchserve else set())
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
    expected = [c for c in PARITY_CONFIGURATIONS if c in parity["configurations"]]  # `before`: git history
    assert ("torchserve_tuned" in expected) == with_torchserve
    assert [(r["concurrency"], r["config"]) for r in parity["rows"]] == [
        (clients, config) for clients in (1, 8, 16) for config in expected
    ]
    for row in parity["rows"]:
        assert row["errors"] == 0, row
        assert row["requests_per_s"] > 0 and row["worker_cpu_ms"] > 0
    assert set(parity["start"]) == set(expected) - {"now_mms_direct"}  # one stack, two addresses
    assert all(start["median_s"] > 0 for start in parity["start"].values())
    if with_torchserve:
        ratios = parity["paired"]["now/torchserve_tuned"]
        assert {"start_s", "c1", "c8", "c16"} <= set(ratios)
        assert set(ratios["c1"]["requests_per_s"]) >= {"mean", "min", "max", "ratios"}
    assert "engine" in proc.stdout and "target" in proc.stdout


def test_parity_pairs_each_cycle_with_the_same_cycle_of_the_reference():
    """benchmarks/parity.py's ratios are per cycle (a noisy machine drifts between cycles, not within
    one): each configuration's burst over the reference's burst of the same cycle and concurrency."""
    from benchmarks.parity import summarise

    rates = {"now": [210.0, 180.0, 200.0], "torchserve_tuned": [150.0, 150.0, 160.0]}
    bursts = [
        {
            "cycle": cycle + 1,
            "config": name,
            "concurrency": 8,
            "requests_per_s": rate,
            "p50_ms": 40.0,
            "p99_ms": 60.0 + cycle,
            "worker_cpu_ms": 9.0,
            "frontend_cpu_ms": 1.0,
            "stack_cpu_ms": 10.0,
            "errors": 0,
        }
        for name, values in rates.items()
        for cycle, rate in enumerate(values)
    ]
    starts = {"now": [2.2, 2.4, 2.3], "torchserve_tuned": [2.8, 2.6, 3.0]}
    result = summarise(bursts, starts)
    pair = result["paired"]["now/torchserve_tuned"]
    expected = [a / b for a, b in zip(rates["now"], rates["torchserve_tuned"], strict=True)]
    assert pair["c8"]["requests_per_s"]["ratios"] == [round(r, 3) for r in expected]
    assert pair["c8"]["requests_per_s"]["min"] == round(min(expected), 3)
    assert pair["c8"]["requests_per_s"]["max"] == round(max(expected), 3)
    assert pair["c8"]["p99_ms"]["mean"] == 1.0
    assert pair["start_s"]["ratios"] == [round(a / b, 3) for a, b in zip(*starts.values(), strict=True)]
    assert result["start"]["now"]["median_s"] == 2.3
    [row] = [r for r in result["rows"] if r["config"] == "now"]
    assert row["requests_per_s"] == round(sum(rates["now"]) / 3, 2)
