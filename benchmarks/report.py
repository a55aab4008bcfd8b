"""Targets (ratios of numbers measured in the same run), the text table, ``report.json`` and
``report.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .stage_costs import STAGES

ENGINE_LABELS = {
    "mxnet_imported": "MXNet, graph as imported",
    "mxnet_optimized": "MXNet, graph cleaned up (served)",
    "mxnet_optimized_no_pad": "MXNet, cleaned up, classifier not widened",
    "mxnet_imported_threaded": "MXNet, as imported, threaded engine (old handler)",
    "mxnet_optimized_threaded": "MXNet, cleaned up, threaded engine",
    "onnxruntime": "ONNX Runtime (reference)",
    "gluon_zoo": "MXNet Gluon model_zoo squeezenet1_1",
}


def target(name: str, description: str, measured: float, limit: float, at_most: bool) -> dict[str, Any]:
    """One target: ``measured`` (a ratio or milliseconds) against ``limit``, with how far it missed."""
    passed = measured <= limit if at_most else measured >= limit
    result: dict[str, Any] = {
        "name": name,
        "description": description,
        "measured": round(measured, 3),
        "limit": limit,
        "comparison": "<=" if at_most else ">=",
        "passed": bool(passed),
    }
    if not passed:
        missed = (measured / limit - 1.0) if at_most else (1.0 - measured / limit)
        result["missed_by_percent"] = round(100.0 * missed, 1)
    return result


def compute_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    engines = report.get("head_to_head") or report["engines"]
    targets = []
    ort, mx = engines.get("onnxruntime"), engines.get("mxnet_optimized")
    if ort and mx:
        targets.append(
            target(
                "engine_batch1_latency",
                "MXNet cleaned-up graph, batch-1 p50 / ONNX Runtime batch-1 p50 "
                "(head to head: alternating blocks in one process)",
                mx["batch1"]["p50_ms"] / ort["batch1"]["p50_ms"],
                1.5,
                at_most=True,
            )
        )
        targets.append(
            target(
                "engine_batch8_throughput",
                "MXNet cleaned-up graph, batch-8 images/s / ONNX Runtime batch-8 images/s (head to head)",
                mx["batch8_images_per_s"] / ort["batch8_images_per_s"],
                0.8,
                at_most=False,
            )
        )
    for engine, result in sorted(report.get("handler_inference", {}).items()):
        ratios = {
            size: result[size]["inference"]["p50_ms"] / result[size]["engine"]["p50_ms"]
            for size in ("batch1", "batch8")
        }
        worst = max(ratios, key=ratios.get)
        targets.append(
            target(
                f"handler_inference_{engine}",
                f"handler inference stage p50 / its raw {engine} engine p50 "
                f"(the worse of batch 1 and 8: {worst})",
                ratios[worst],
                1.1,
                at_most=True,
            )
        )
    pre = report.get("preprocessing", {})
    if "jpeg_500x375" in pre:
        targets.append(
            target(
                "preprocess_jpeg_500x375",
                "preprocessing p50 (ms) of a 500x375 photo-like JPEG",
                pre["jpeg_500x375"]["p50_ms"],
                3.0,
                at_most=True,
            )
        )
    if "jpeg_12mp" in pre and "jpeg_12mp_full_decode" in pre:
        targets.append(
            target(
                "preprocess_12mp_speedup",
                "12 MP JPEG: plain full decode p50 / handler preprocessing p50 (draft decode)",
                pre["jpeg_12mp_full_decode"]["p50_ms"] / pre["jpeg_12mp"]["p50_ms"],
                3.0,
                at_most=False,
            )
        )
    targets += serving_targets(report.get("serving", {}))
    targets += parity_targets(report.get("parity", {}))
    return targets


def parity_targets(parity: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 23's targets, from ``benchmarks/parity.py``'s paired ratios (mean over the cycles; the
    spread is kept beside each)."""
    paired = parity.get("paired", {})
    targets = []

    def add(name: str, description: str, summary: dict[str, Any], limit: float, at_most: bool) -> None:
        if summary:
            found = target(name, description, summary["mean"], limit, at_most)
            found["spread"] = {k: summary.get(k) for k in ("min", "max", "standard_error")}
            targets.append(found)

    start = parity.get("start", {}).get("now")
    if start:
        description = "`serve` start -> first 200, alone (median, s)"
        targets.append(target("parity_start_s", description, start["median_s"], 2.5, True))
    tuned = paired.get("now/torchserve_tuned", {})
    description = "start -> first 200, `serve` / TorchServe tuned"
    add("parity_start_vs_ts", description, tuned.get("start_s", {}), 1.0, True)
    c1 = tuned.get("c1", {})
    add("parity_c1_p99_vs_ts", "p99 at c=1, `serve` / TorchServe tuned", c1.get("p99_ms", {}), 1.0, True)
    add(
        "parity_c1_cpu_vs_ts",
        "worker CPU per request at c=1, `serve` / TorchServe tuned",
        c1.get("worker_cpu_ms", {}),
        1.1,
        True,
    )
    for level in ("c8", "c16"):
        add(
            f"parity_{level}_vs_ts",
            f"requests/s at {level.replace('c', 'c=')}, `serve` / TorchServe tuned",
            tuned.get(level, {}).get("requests_per_s", {}),
            1.0,
            False,
        )
    ort = paired.get("now_onnxruntime/now", {})
    add(
        "parity_ort_c1_cpu_vs_mxnet",
        "worker CPU per request at c=1, ONNX Runtime engine / MXNet engine (both `serve`)",
        ort.get("c1", {}).get("worker_cpu_ms", {}),
        1.2,
        True,
    )
    add(
        "parity_ort_c8_vs_ts",
        "requests/s at c=8, `serve` with ONNX Runtime / TorchServe tuned",
        paired.get("now_onnxruntime/torchserve_tuned", {}).get("c8", {}).get("requests_per_s", {}),
        1.0,
        False,
    )
    return targets


def serving_targets(serving: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance issue's targets: today's default served configuration against the code before
    it (``benchmarks/comparison.py``), all measured in this run."""
    from .comparison import row

    if not serving.get("rows"):
        return []
    targets = []
    default = {c: row(serving, "default", c) for c in (1, 8, 16)}
    workers2 = {c: row(serving, "baseline_workers2", c) for c in (8, 16)}
    for clients in (8, 16):
        if default[clients] and workers2[clients]:
            targets.append(
                target(
                    f"serving_c{clients}_vs_workers2",
                    f"default `serve` req/s / before-the-work `serve --workers 2` req/s, c={clients}",
                    default[clients]["requests_per_s"] / workers2[clients]["requests_per_s"],
                    1.2,
                    at_most=False,
                )
            )
    before = row(serving, "baseline_default", 1)
    if default[1] and before:
        targets.append(
            target(
                "serving_c1_vs_default",
                "default `serve` req/s / before-the-work `serve` defaults req/s, c=1",
                default[1]["requests_per_s"] / before["requests_per_s"],
                1.0,
                at_most=False,
            )
        )
    if default[8]:
        targets.append(
            target(
                "serving_worker_cpu_c8",
                "Python worker CPU ms per request, default `serve`, c=8",
                default[8]["worker_cpu_ms_per_request"],
                8.0,
                at_most=True,
            )
        )
    rss = serving.get("rss_mb_after_max_concurrency", {})
    if "default" in rss and "baseline_workers2" in rss:
        targets.append(
            target(
                "serving_rss_vs_workers2",
                "total RSS after the c=16 bursts, default `serve` / before-the-work `serve --workers 2`",
                rss["default"] / rss["baseline_workers2"],
                1.0,
                at_most=True,
            )
        )
    return targets


# ---------------------------------------------------------------------------------------------- text
def table(report: dict[str, Any]) -> str:
    lines = []
    add = lines.append
    m = report["machine"]
    add(f"machine: {m['cpu_model']}, nproc {m['nproc']}, load average {report['load_average']}")
    add("")
    add(f"{'engine':52} {'b1 p50':>8} {'b1 p90':>8} {'b8 img/s':>9} {'max|dp|':>9}")
    for name, result in report["engines"].items():
        diff = result.get("max_abs_diff_vs_onnxruntime")
        add(
            f"{ENGINE_LABELS.get(name, name):52} {result['batch1']['p50_ms']:8.2f} "
            f"{result['batch1']['p90_ms']:8.2f} {result['batch8_images_per_s']:9.1f} "
            f"{'' if diff is None else f'{diff:.1e}':>9}"
        )
    for name, result in report.get("head_to_head", {}).items():
        if isinstance(result, dict) and "batch1" in result:
            add(
                f"{'head to head: ' + ENGINE_LABELS.get(name, name).split(',')[0]:52} "
                f"{result['batch1']['p50_ms']:8.2f} {result['batch1']['p90_ms']:8.2f} "
                f"{result['batch8_images_per_s']:9.1f}"
            )
    for engine, result in sorted(report.get("handler_inference", {}).items()):
        stage = result["batch1"]["inference"]
        add(
            f"{'handler inference stage, ' + engine:52} {stage['p50_ms']:8.2f} {stage['p90_ms']:8.2f} "
            f"{result['batch8_images_per_s']:9.1f}"
        )
    add("")
    add(f"{'preprocessing':40} {'bytes':>9} {'p50 ms':>8} {'p90 ms':>8}")
    for name, result in report.get("preprocessing", {}).items():
        add(f"{name:40} {result['bytes']:9d} {result['p50_ms']:8.2f} {result['p90_ms']:8.2f}")
    startup = report.get("startup", {})
    if startup:
        add("")
        add(f"{'worker start-up (model load to first answer)':52} {'seconds':>8}")
        for where, results in startup.items():
            for fmt, result in results.items():
                add(f"{where + ', ' + fmt + ' archive':52} {result['total_s']:8.2f}")
    serving = report.get("serving", {})
    if serving.get("rows"):
        add("")
        client, cycles, burst = serving["client"], serving["cycles"], serving["burst_s"]
        add(f"served side by side ({client}, {cycles} cycles of {burst} s bursts)")
        header = f"{'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'worker ms':>9} {'frontend ms':>11}"
        add(f"{'configuration':28} {header}")
        for served in serving["rows"]:
            label = f"{served['config']} c={served['concurrency']}"
            add(
                f"{label:28} {served['requests_per_s']:7.1f} {served['p50_ms'] or 0:7.1f} "
                f"{served['p99_ms'] or 0:7.1f} {served['errors']:4d} "
                f"{served['worker_cpu_ms_per_request'] or 0:9.2f} "
                f"{served['frontend_cpu_ms_per_request'] or 0:11.2f}"
            )
        rss = ", ".join(f"{k} {v:.0f} MB" for k, v in serving.get("rss_mb_after_max_concurrency", {}).items())
        add(f"total RSS after the c=16 bursts: {rss}")
        costs = serving.get("stage_costs", {})
        if costs:
            by_stage = costs["cpu_ms_per_request"]
            stages = ", ".join(f"{k} {by_stage[k]:.2f}" for k in STAGES if k in by_stage)
            add(f"worker CPU per request by stage, 1 thread (ms): {stages}")
            add(f"  total {costs['total_cpu_ms']:.2f} ms in-process")
    e2e = report.get("end_to_end", {})
    for size, row in sorted(e2e.get("inprocess", {}).items()):
        add(f"{'in-process handler, ' + size:28} {row['images_per_s']:7.1f} {row['call']['p50_ms']:8.1f}")
    if report.get("parity", {}).get("rows") or report.get("parity", {}).get("start"):
        from .parity import table as parity_table

        add("")
        add(parity_table(report["parity"]))
    comparisons = report.get("comparisons", [])
    if comparisons:
        add("")
        add("batch-1 p50, measured in this run:")
        for row in comparisons:
            measured = " -> ".join("n/a" if v is None else f"{v:.2f}" for v in row["measured_ms"])
            ratio = "" if row["ratio"] is None else f" ({row['ratio']:.2f}x)"
            add(f"  {row['what']}: {measured} ms{ratio}")
    busy = {k: v for k, v in report.get("other_processes_cores", {}).items() if v >= 0.2}
    if busy:
        add("")
        add("other processes used CPU meanwhile (cores): " + ", ".join(f"{k} {v}" for k, v in busy.items()))
    add("")
    add(f"{'target':28} {'measured':>9} {'limit':>9}  result")
    for t in report.get("targets", []):
        verdict = "pass" if t["passed"] else f"MISSED by {t['missed_by_percent']}%"
        add(f"{t['name']:28} {t['measured']:9.3f} {t['comparison']:>3}{t['limit']:6.2f}  {verdict}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- files
def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def write_plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(18, 18))
    grid = fig.add_gridspec(4, 3, height_ratios=(1, 1, 1, 0.8))
    axes = [[fig.add_subplot(grid[row, col]) for col in range(3)] for row in range(3)]
    engines = report["engines"]
    names = list(engines)
    labels = [ENGINE_LABELS.get(n, n).replace(", ", ",\n", 1) for n in names]

    ax = axes[0][0]
    p50 = [engines[n]["batch1"]["p50_ms"] for n in names]
    p90 = [engines[n]["batch1"]["p90_ms"] for n in names]
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], p50, height=0.4, label="p50")
    ax.barh([i - 0.2 for i in y], p90, height=0.4, label="p90", alpha=0.6)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.set_xlabel("ms per forward pass")
    ax.set_title("Engine latency, batch 1")
    ax.legend()

    ax = axes[0][1]
    ax.barh(list(y), [engines[n]["batch8_images_per_s"] for n in names], color="tab:green")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.set_xlabel("images/s")
    ax.set_title("Engine throughput, batch 8")

    ax = axes[0][2]
    pre = report.get("preprocessing", {})
    ax.barh(list(range(len(pre))), [r["p50_ms"] for r in pre.values()], color="tab:orange")
    ax.set_yticks(list(range(len(pre))), list(pre), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (p50, log scale)")
    ax.set_title("Preprocessing per image")

    ax = axes[1][0]
    rows = [(f"{w}\n{f}", r["total_s"]) for w, rs in report.get("startup", {}).items() for f, r in rs.items()]
    ax.bar([r[0] for r in rows], [r[1] for r in rows], color="tab:purple")
    ax.set_ylabel("seconds")
    ax.set_title("Worker start-up: model load to first answer")

    _serving_panels(axes[1][1], axes[1][2], report)
    _parity_panels(axes[2], report.get("parity", {}))

    _targets_panel(fig.add_subplot(grid[3, :]), report.get("targets", []))
    m = report["machine"]
    fig.suptitle(
        f"SqueezeNet 1.1 service, {m['cpu_model']}, {m['nproc']} cores"
        f"{' (quick run)' if report['settings']['quick'] else ''}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _serving_panels(throughput: Any, costs: Any, report: dict[str, Any]) -> None:
    """Requests/s of each served configuration per concurrency; the worker's CPU per request, measured
    per configuration at c=8 beside the in-process split by stage."""
    serving = report.get("serving", {})
    names = list(serving.get("configurations", {}))
    for name in names:
        rows = [r for r in serving["rows"] if r["config"] == name]
        throughput.plot(
            [r["concurrency"] for r in rows], [r["requests_per_s"] for r in rows], "o-", label=name
        )
    inprocess = report.get("end_to_end", {}).get("inprocess", {}).get("batch1")
    if inprocess:
        throughput.axhline(
            inprocess["images_per_s"],
            linestyle=":",
            color="grey",
            label=f"in-process handler, one process: {inprocess['images_per_s']:.0f} images/s",
        )
    throughput.set_xlabel("concurrent clients")
    throughput.set_ylabel("requests/s")
    throughput.set_title("Served side by side through MMS (one 500x375 JPEG)")
    throughput.legend(fontsize=8)

    stages = serving.get("stage_costs", {}).get("cpu_ms_per_request", {})
    left = 0.0
    for stage in (s for s in STAGES if s in stages):
        costs.barh(0, stages[stage], left=left, label=stage)
        left += stages[stage]
    measured = [(n, r["worker_cpu_ms_per_request"] or 0) for n in names if (r := _row(serving, n, 8))]
    for index, (_, millis) in enumerate(measured, start=1):
        costs.barh(index, millis, color="lightsteelblue", edgecolor="black")
    costs.set_yticks(range(len(measured) + 1), ["by stage,\nin-process"] + [f"{n}\nc=8" for n, _ in measured])
    costs.axvline(8.0, color="red", linestyle="--", label="target 8 ms")
    costs.set_xlabel("Python worker CPU ms per request")
    costs.set_title("Where a request's worker CPU goes")
    costs.set_xlim(0, 1.7 * max([left, *(m for _, m in measured)], default=1.0))
    costs.legend(fontsize=7, loc="center right")


def _parity_panels(axes: list[Any], parity: dict[str, Any]) -> None:
    """Issue 23: start-up (median, min-max), requests/s per concurrency, and p99 and worker CPU per
    request at c=1, of each configuration of ``benchmarks/parity.py``."""
    start, rows = parity.get("start", {}), parity.get("rows", [])
    if not start and not rows:
        for ax in axes:
            ax.axis("off")
        axes[1].text(0.5, 0.5, "no parity run (--skip-mms)", ha="center", va="center")
        return
    names = list(start)
    medians = [start[n]["median_s"] for n in names]
    spread = [
        [m - start[n]["min_s"] for n, m in zip(names, medians, strict=True)],
        [start[n]["max_s"] - m for n, m in zip(names, medians, strict=True)],
    ]
    axes[0].barh(names, medians, xerr=spread, color="tab:cyan", capsize=3)
    axes[0].axvline(2.5, color="red", linestyle="--", label="target 2.5 s")
    axes[0].set_xlabel("seconds, launch to first 200 (median, min-max)")
    axes[0].set_title("Start-up, each configuration alone")
    axes[0].legend(fontsize=7)
    configs = list(dict.fromkeys(r["config"] for r in rows))
    for name in configs:
        mine = [r for r in rows if r["config"] == name]
        axes[1].plot([r["concurrency"] for r in mine], [r["requests_per_s"] for r in mine], "o-", label=name)
    axes[1].set_xlabel("concurrent clients")
    axes[1].set_ylabel("requests/s")
    axes[1].set_title(f"Side by side with TorchServe ({parity.get('cycles')} alternated cycles)")
    axes[1].legend(fontsize=7)
    c1 = [r for r in rows if r["concurrency"] == 1]
    y = range(len(c1))
    axes[2].barh([i + 0.2 for i in y], [r["p99_ms"] or 0 for r in c1], height=0.4, label="p99 ms")
    axes[2].barh(
        [i - 0.2 for i in y], [r["worker_cpu_ms"] or 0 for r in c1], height=0.4, label="worker CPU ms/request"
    )
    axes[2].set_yticks(list(y), [r["config"] for r in c1], fontsize=8)
    axes[2].set_title("At c=1: p99 and the workers' CPU per request")
    axes[2].legend(fontsize=7)


def _row(serving: dict[str, Any], name: str, concurrency: int) -> dict[str, Any] | None:
    from .comparison import row

    return row(serving, name, concurrency)


def _targets_panel(ax: Any, targets: list[dict[str, Any]]) -> None:
    """The targets as a table, each row green (met) or red (missed)."""
    ax.axis("off")
    ax.set_title("Targets (ratios measured in this run)")
    if not targets:
        ax.text(0.5, 0.5, "no targets in this run", ha="center", va="center")
        return
    rows = [
        [
            t["name"],
            f"{t['measured']:.3f}",
            f"{t['comparison']} {t['limit']:g}",
            "met" if t["passed"] else "MISSED",
        ]
        for t in targets
    ]
    columns = ["target", "measured", "limit", "result"]
    table = ax.table(cellText=rows, colLabels=columns, loc="upper center", bbox=[0, 0, 1, 0.95])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.15)
    for row, target in enumerate(targets, start=1):
        colour = "#c8f0c8" if target["passed"] else "#f5c2c2"
        for column in range(4):
            table[row, column].set_facecolor(colour)
