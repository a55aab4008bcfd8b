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


def test_answers_are_the_same_only_with_the_same_classes_in_order_and_probabilities_within_1e4():
    """benchmarks/answers.py's verdict for the README's "same answers": classes equal and in order, each
    probability within the tolerance; a failed answer is never the same."""
    from benchmarks.answers import compare, judge

    reference = {
        "photo.jpg": [
            {"class": "n1 tench", "probability": 0.6},
            {"class": "n2 goldfish", "probability": 0.3},
        ],
        "scene.png": [{"class": "n3 shark", "probability": 0.9}, {"class": "n1 tench", "probability": 0.05}],
    }

    def moved(image: str, index: int, by: float) -> dict:
        answers = {name: [dict(entry) for entry in top] for name, top in reference.items()}
        answers[image][index]["probability"] += by
        return answers

    close, far = moved("scene.png", 1, 5e-5), moved("photo.jpg", 1, -2e-4)
    swapped = {**reference, "photo.jpg": reference["photo.jpg"][::-1]}
    failed = {**reference, "scene.png": "503: worker died"}

    assert compare(close, reference) == {
        "same": True,
        "largest_probability_gap": pytest.approx(5e-5),
        "differences": [],
    }
    verdict = compare(far, reference)
    assert not verdict["same"] and verdict["largest_probability_gap"] == pytest.approx(2e-4)
    assert verdict["differences"] == ["photo.jpg: n2 goldfish: probability 0.2998000 instead of 0.3000000"]
    assert compare(swapped, reference)["differences"] == [
        "photo.jpg: classes ['n2 goldfish', 'n1 tench'] instead of ['n1 tench', 'n2 goldfish']"
    ]
    assert compare(failed, reference)["differences"] == ["scene.png: no top-k answer ('503: worker died')"]

    judged = judge({"a": close, "b": far, "c": reference}, reference)
    assert {name: v["same"] for name, v in judged["configurations"].items()} == {
        "a": True,
        "b": False,
        "c": True,
    }
    assert {pair: v["same"] for pair, v in judged["pairs"].items()} == {
        "a/b": False,
        "a/c": True,
        "b/c": False,
    }
    assert judged["all_same"] is False and judged["images"] == ["photo.jpg", "scene.png"]
    with_failure = judge({"a": close, "d": failed}, reference)["pairs"]["a/d"]
    assert with_failure["differences"] == ["scene.png: no top-k answer ('503: worker died')"]


def test_parity_measures_stock_mms_only_when_named_and_refuses_unknown_names():
    """``--only``: the named configurations in their own order (``now_mms_direct`` brings ``now``);
    without names the default set, which leaves ``stock_mms`` out; a name not available is an error."""
    from benchmarks.common import BenchmarkError
    from benchmarks.parity import Configuration, chosen

    def never(home, body):
        raise AssertionError("not started here")

    configs = [
        Configuration("now", "", never),
        Configuration("stock_mms", "", never, default=False),
        Configuration("torchserve_default", "", never),
    ]
    assert [c.name for c in chosen(configs, ())] == ["now", "torchserve_default"]
    named = chosen(configs, ("torchserve_default", "stock_mms", "now"))
    assert [c.name for c in named] == ["now", "stock_mms", "torchserve_default"]
    assert [c.name for c in chosen(configs, ("now_mms_direct",))] == ["now"]
    with pytest.raises(BenchmarkError, match="no configuration before here.*there are: now, now_mms_direct"):
        chosen(configs, ("now", "before"))
