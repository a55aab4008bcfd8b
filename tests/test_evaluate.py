"""``squeezenet-mar evaluate`` on a generated validation folder, in-process and through a real server.

The expected counts come from ONNX Runtime on the independent reference preprocessing, never from the
evaluator: each image is labelled with its ORT top-1 class, its ORT 3rd class or its ORT 100th class,
so that the expected top-1 and top-5 are known and neither 0 nor 100 %. Two images with the same ORT
top-1 share one wrong label, so that one confused pair counts twice.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import random
import re
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import images
from harness import ROOT
from reference import reference_tensor
from squeezenet_mar.cli import main
from squeezenet_mar.evaluate import IMAGENET_CLASSES_MISSING
from squeezenet_mar.zoo import publish_archive
from squeezenet_onnx import reference_probabilities

SYNSET = [line.strip() for line in (ROOT / "synset.txt").read_text().splitlines() if line.strip()]
IMAGES = 24
SIZE = (320, 240)  # shorter side < 512: no JPEG draft decoding in the handler, as in reference_tensor
MARGIN = 0.01  # minimum log-probability gap at every boundary a label's outcome depends on
CORRUPT = "ILSVRC2012_val_00000025.JPEG"  # a truncated JPEG: the handler answers 400
DANGLING = "ILSVRC2012_val_00000026.JPEG"  # a symbolic link to nothing: cannot be read
RUN_FIELDS = {"date", "images_per_second", "served_by", "archive", "archive_sha256"}


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


@dataclass(frozen=True)
class Folder:
    path: Path
    labels_file: Path | None
    labels: dict[str, int]  # every evaluated file name -> class index
    top5: dict[str, list[int]]  # ORT's top 5 for every decodable image; absent for failed ones


def ort_top5(
    onnx_model: Path, bodies: dict[str, bytes]
) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    names = sorted(bodies)
    probabilities = reference_probabilities(
        onnx_model, np.stack([reference_tensor(bodies[n]) for n in names])
    )
    logs = {name: np.log(p) for name, p in zip(names, probabilities, strict=True)}
    return {name: np.argsort(-logs[name])[:5].tolist() for name in names}, logs


def assert_robust(label: int, log_p: np.ndarray) -> None:
    """The label's top-1 and top-5 outcome, and the predicted top-1, survive float noise of MXNet vs ORT."""
    order = np.argsort(-log_p)
    assert log_p[order[0]] - log_p[order[1]] > MARGIN, "top-1 near a tie"
    others = np.delete(log_p, label)
    assert abs(log_p[label] - others.max()) > MARGIN, "label near the top-1 boundary"
    rank = int(np.where(order == label)[0][0])
    boundary = log_p[order[5]] if rank < 5 else log_p[order[4]]
    assert abs(log_p[label] - boundary) > MARGIN, "label near the top-5 boundary"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Folder:
    """24 decodable JPEGs, a truncated one and a dangling link, all ILSVRC2012_val_*.JPEG, with a labels
    file mixing class indices and WordNet ids, a line for a file that is not there, and a stray file."""
    path = tmp_path_factory.mktemp("val")
    bodies = {val_name(i + 1): images.jpeg(*SIZE, seed=i) for i in range(IMAGES)}
    top5, logs = ort_top5(onnx_model, bodies)
    labels: dict[str, int] = {}
    for i, name in enumerate(sorted(bodies)):
        order = np.argsort(-logs[name])
        labels[name] = int(order[(0, 2, 99)[i % 3]])  # ORT's top-1, its 3rd class, or far outside the top 5
    misses = [name for i, name in enumerate(sorted(bodies)) if i % 3 == 2]
    by_top1: dict[int, list[str]] = {}
    for name in misses:
        by_top1.setdefault(top5[name][0], []).append(name)
    pair = next(names for names in by_top1.values() if len(names) >= 2)[:2]
    for name in pair:
        labels[name] = labels[pair[0]]
    for name, label in labels.items():
        assert_robust(label, logs[name])
    for name, body in bodies.items():
        (path / name).write_bytes(body)
    full = images.jpeg(*SIZE, seed=99)
    (path / CORRUPT).write_bytes(full[: len(full) // 2])
    (path / DANGLING).symlink_to(path / "gone.JPEG")
    (path / "README.txt").write_text("not an image\n")
    labels[CORRUPT], labels[DANGLING] = 7, 1
    lines = ["# file label", f"{val_name(99)} 3"]  # labelled, but not in the folder: skipped
    for number, name in enumerate(sorted(labels)):
        wnid = SYNSET[labels[name]].split()[0]
        lines.append(f"{name} {wnid if number % 4 == 1 else labels[name]}")
    labels_file = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels_file.write_text("\n".join(lines) + "\n")
    return Folder(path, labels_file, labels, top5)


@pytest.fixture(scope="module")
def real_ids(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Folder:
    """ILSVRC2012_val_00000001..12.JPEG named after real validation images; ground truth: imagenet-classes."""
    import imagenet_classes

    path = tmp_path_factory.mktemp("val_real_ids")
    bodies = {val_name(i + 1): images.jpeg(*SIZE, seed=100 + i) for i in range(12)}
    top5, logs = ort_top5(onnx_model, bodies)
    labels = {name: imagenet_classes.val_image_to_1k_label(name) for name in bodies}
    for name, body in bodies.items():
        (path / name).write_bytes(body)
        assert_robust(labels[name], logs[name])
    return Folder(path, None, labels, top5)


def expected(folder: Folder, names: list[str] | None = None) -> dict[str, Any]:
    """Counts, confusions and per-class rows, from ORT's top 5 and the labels alone."""
    names = sorted(folder.labels) if names is None else names
    top1 = top5 = failed = 0
    confusions: Counter[tuple[int, int]] = Counter()
    per_class: dict[int, list[int]] = {}
    for name in names:
        label = folder.labels[name]
        row = per_class.setdefault(label, [0, 0, 0])
        row[0] += 1
        if name not in folder.top5:
            failed += 1
            continue
        predicted = folder.top5[name]
        row[1] += predicted[0] == label
        row[2] += label in predicted
        top1 += predicted[0] == label
        top5 += label in predicted
        if predicted[0] != label:
            confusions[(label, predicted[0])] += 1
    ranked = sorted(confusions.items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        "images": len(names),
        "failed": failed,
        "top1_correct": top1,
        "top5_correct": top5,
        "top1": round(100 * top1 / len(names), 2),
        "top5": round(100 * top5 / len(names), 2),
        "confusions": [
            {
                "true": t,
                "true_class": SYNSET[t],
                "predicted": p,
                "predicted_class": SYNSET[p],
                "count": n,
            }
            for (t, p), n in ranked
        ],
        "per_class": [
            {
                "class": str(c),
                "wnid": SYNSET[c].split()[0],
                "name": SYNSET[c].split(maxsplit=1)[1],
                "images": str(n),
                "top1_correct": str(h1),
                "top5_correct": str(h5),
                "top1_percent": f"{100 * h1 / n:.2f}",
                "top5_percent": f"{100 * h5 / n:.2f}",
            }
            for c, (n, h1, h5) in sorted(per_class.items())
        ],
    }


@dataclass(frozen=True)
class Run:
    code: int
    out: list[str]
    err: str
    json: dict[str, Any]
    per_class: list[dict[str, str]]
    json_path: Path
    csv_path: Path


def evaluate(tmp: Path, *args: str) -> Run:
    """``squeezenet-mar evaluate ARGS --json --per-class`` in this process, output captured."""
    tmp.mkdir(parents=True, exist_ok=True)
    json_file, csv_file = tmp / "evaluation.json", tmp / "per_class.csv"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["evaluate", *args, "--json", str(json_file), "--per-class", str(csv_file)])
    document = json.loads(json_file.read_text()) if code == 0 else {}
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text()))) if code == 0 else []
    return Run(code, stdout.getvalue().splitlines(), stderr.getvalue(), document, rows, json_file, csv_file)


def assert_matches(run: Run, want: dict[str, Any]) -> None:
    assert run.code == 0, run.err
    for key in ("images", "failed", "top1_correct", "top5_correct", "top1", "top5", "confusions"):
        assert run.json[key] == want[key], key
    assert run.per_class == want["per_class"]


def table(want: dict[str, Any], head: str) -> list[str]:
    """The lines the command prints before the images-per-second line."""
    t1, t5 = 100 * want["top1_correct"] / want["images"], 100 * want["top5_correct"] / want["images"]
    return [
        head,
        "                    this run   model zoo  difference",
        f"images            {want['images']:>10}       50000",
        f"failed            {want['failed']:>10}",
        f"top-1             {t1:>8.2f} %     56.34 %{t1 - 56.34:>+12.2f}",
        f"top-5             {t5:>8.2f} %     79.12 %{t5 - 79.12:>+12.2f}",
    ]


def confusion_lines(want: dict[str, Any]) -> list[str]:
    short = [
        f"  {c['true_class'].split(',')[0]} -> {c['predicted_class'].split(',')[0]}: {c['count']}"
        for c in want["confusions"]
    ]
    return ["most confused (true class -> predicted top-1: images):", *short]


@pytest.fixture(scope="module")
def inprocess_run(built, folder: Folder, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("inprocess_run")
    return evaluate(
        tmp,
        "--images",
        str(folder.path),
        "--labels",
        str(folder.labels_file),
        "--archive",
        str(built.archive),
    )


# -------------------------------------------------------------------------------------- in-process
def test_the_labels_make_a_non_trivial_accuracy(folder):
    want = expected(folder)
    assert want["images"] == 26 and want["failed"] == 2
    assert 0 < want["top1_correct"] < want["top5_correct"] < want["images"] - want["failed"]
    assert want["confusions"][0]["count"] == 2  # the shared wrong label


def test_inprocess_counts_match_onnxruntime(inprocess_run, folder):
    assert_matches(inprocess_run, expected(folder))


def test_inprocess_prints_the_table_against_the_model_zoo(inprocess_run, folder):
    want = expected(folder)
    head = "squeezenet_v1.1 1.1: in-process handler, batches of 8; ground truth labels.txt; images: all 26"
    out = inprocess_run.out
    assert out[:6] == table(want, head)
    assert re.fullmatch(r"images per second +\d+\.\d", out[6])
    assert out[7] == "failed images count as wrong in top-1 and top-5 (2):"
    assert out[8].startswith(f"  {CORRUPT}  HTTP 400: cannot decode the image") and "truncated" in out[8]
    assert out[9] == f"  {DANGLING}  unreadable: cannot read the file: No such file or directory"
    confusions = confusion_lines(want)
    assert out[10 : 10 + len(confusions)] == confusions
    assert out[10 + len(confusions) :] == [
        f"json      {inprocess_run.json_path}",
        f"per class {inprocess_run.csv_path}",
    ]


def test_inprocess_json_is_the_record_publish_takes(inprocess_run, folder, built):
    record, want = inprocess_run.json, expected(folder)
    assert record["reference_top1"] == 56.34 and record["reference_top5"] == 79.12
    assert record["top1_difference"] == round(100 * want["top1_correct"] / 26 - 56.34, 2)
    assert record["top5_difference"] == round(100 * want["top5_correct"] / 26 - 79.12, 2)
    assert record["images_per_second"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date"])
    assert {k: record[k] for k in ("model", "ground_truth", "subset", "served_by", "archive")} == {
        "model": "squeezenet_v1.1 1.1",
        "ground_truth": "labels.txt",
        "subset": "all 26",
        "served_by": "in-process handler, batches of 8",
        "archive": "squeezenet_v1.1.mar",
    }
    assert record["archive_sha256"] == built.sha256
    corrupt, dangling = record["failures"]
    assert (corrupt["image"], corrupt["status"]) == (CORRUPT, 400) and "truncated" in corrupt["error"]
    assert dangling == {
        "image": DANGLING,
        "status": 0,
        "error": "cannot read the file: No such file or directory",
    }


def test_progress_bar_on_stderr_shows_the_running_accuracy(inprocess_run, folder):
    want = expected(folder)
    final = f"top1={want['top1']:.2f}%, top5={want['top5']:.2f}%, failed=2"
    assert "evaluating: 100%" in inprocess_run.err and final in inprocess_run.err


def test_limit_takes_the_first_names_or_a_seeded_sample_the_same_every_time(built, folder, tmp_path):
    names = sorted(folder.labels)
    base = [
        "--images",
        str(folder.path),
        "--labels",
        str(folder.labels_file),
        "--archive",
        str(built.archive),
    ]
    for extra, subset, chosen in (
        (["--limit", "10"], "first 10 of 26 by file name", names[:10]),
        (
            ["--limit", "10", "--seed", "3"],
            "10 of 26, sampled with seed 3",
            sorted(random.Random(3).sample(names, 10)),
        ),
    ):
        first = evaluate(tmp_path / "first", *base, *extra, "-q")
        again = evaluate(tmp_path / "again", *base, *extra, "-q")
        assert_matches(first, expected(folder, chosen))
        assert first.json["subset"] == subset
        assert first.per_class == again.per_class
        assert {k: v for k, v in first.json.items() if k not in RUN_FIELDS} == {
            k: v for k, v in again.json.items() if k not in RUN_FIELDS
        }
        assert "evaluating" not in first.err  # -q: no progress bar


def test_ground_truth_from_imagenet_classes_by_file_name(built, real_ids, tmp_path):
    assert real_ids.labels[val_name(1)] == 65  # ILSVRC2012_val_00000001.JPEG is a sea snake
    run = evaluate(tmp_path, "--images", str(real_ids.path), "--archive", str(built.archive), "-q")
    assert_matches(run, expected(real_ids))
    assert run.json["ground_truth"] == "imagenet-classes (file names)"
    assert sorted(int(row["class"]) for row in run.per_class) == sorted(set(real_ids.labels.values()))
    assert run.out[0] == (
        "squeezenet_v1.1 1.1: in-process handler, batches of 8; "
        "ground truth imagenet-classes (file names); images: all 12"
    )


def test_without_imagenet_classes_the_error_says_what_to_install(real_ids, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagenet_classes", None)  # makes `import imagenet_classes` fail
    run = evaluate(tmp_path, "--images", str(real_ids.path), "--server", "http://127.0.0.1:9", "-q")
    assert run.code == 1
    assert run.err.strip().splitlines()[-1] == f"error: {IMAGENET_CLASSES_MISSING}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "ILSVRC2012_val_00000001.JPEG n99999999",
            "labels.txt line 2: n99999999 is not a class of synset.txt",
        ),
        (
            "ILSVRC2012_val_00000001.JPEG 1000",
            "labels.txt line 2: label '1000' is neither a class index 0..999",
        ),
        ("ILSVRC2012_val_00000001.JPEG 3 4", "labels.txt line 2: expected '<file name> <label>'"),
    ],
)
def test_a_bad_labels_file_names_the_line(folder, tmp_path, line, message):
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{val_name(2)} n01440764\n{line}\n")
    run = evaluate(
        tmp_path, "--images", str(folder.path), "--labels", str(labels), "--server", "http://127.0.0.1:9"
    )
    assert run.code == 1
    assert run.err.strip().splitlines()[-1].startswith(f"error: {message}")


def test_an_archive_with_an_unsafe_entry_is_refused(built, folder, tmp_path):
    evil = tmp_path / "evil.mar"
    with zipfile.ZipFile(built.archive) as source, zipfile.ZipFile(evil, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("../escape.py", "print('outside the archive folder')\n")
    run = evaluate(
        tmp_path, "--images", str(folder.path), "--labels", str(folder.labels_file), "--archive", str(evil)
    )
    assert run.code == 5
    assert "../escape.py: refused entry: path escapes the archive folder" in run.err
    assert not (tmp_path.parent / "escape.py").exists()


def planted(built: Path, target: Path, mark: Path, resum: bool) -> Path:
    """The built archive with a handler that writes ``mark`` when imported; its SHA256SUMS updated
    (``resum``: an archive consistent in itself) or not (one that verify refuses)."""
    from squeezenet_mar.layout import SHA256SUMS, sha256sums, write_zip

    with zipfile.ZipFile(built) as source:
        files = {info.filename: source.read(info) for info in source.infolist()}
    plant = f"import pathlib\npathlib.Path({str(mark)!r}).write_text('the handler ran')\n".encode()
    files["squeezenet_service.py"] += plant
    if resum:
        files[SHA256SUMS] = sha256sums({k: v for k, v in files.items() if k != SHA256SUMS})
    write_zip(target, files)
    return target


def test_an_archive_verify_refuses_never_runs_in_process(built, tmp_path):
    """evaluate --archive imported the archive's handler with no check: an archive whose handler no
    longer matches its SHA256SUMS, or that is not signed by the trusted key, is now refused before
    any import; the planted handler leaves its mark only when the archive passes."""
    from keys import make_key
    from squeezenet_mar.errors import SignatureVerifyError, VerifyError
    from squeezenet_mar.evaluate import EvaluateOptions, run_evaluation
    from squeezenet_mar.signatures import Trust

    images_dir = tmp_path / "val"
    images_dir.mkdir()
    (images_dir / "a.JPEG").write_bytes(images.jpeg(320, 240, 11))
    labels = tmp_path / "labels.txt"
    labels.write_text("a.JPEG 1\n")
    mark = tmp_path / "mark"
    options = EvaluateOptions(images=images_dir, labels=labels, progress=False)
    trust = Trust(public_key=make_key(tmp_path / "keys", "publisher").public)

    inconsistent = planted(built.archive, tmp_path / "inconsistent.mar", mark, resum=False)
    with pytest.raises(VerifyError, match="squeezenet_service.py: sha256 is"):
        run_evaluation(dataclasses.replace(options, archive=inconsistent))
    assert not mark.exists()

    consistent = planted(built.archive, tmp_path / "consistent.mar", mark, resum=True)
    with pytest.raises(SignatureVerifyError, match="unsigned"):
        run_evaluation(dataclasses.replace(options, archive=consistent, trust=trust))
    assert not mark.exists()

    assert run_evaluation(dataclasses.replace(options, archive=consistent)).images == 1
    assert mark.read_text() == "the handler ran"  # what the refusals above prevented


def test_nothing_to_evaluate_without_archive_or_url(folder, tmp_path):
    run = evaluate(tmp_path, "--images", str(folder.path), "--labels", str(folder.labels_file))
    assert run.code == 2 and "give an ARCHIVE (run in-process) or --server URL" in run.err


CONTENT_LABEL = "Archive content SHA-256 (its files; signing leaves it unchanged)"


def test_the_published_card_shows_the_evaluation(built, inprocess_run, tmp_path):
    record = json.loads(inprocess_run.json_path.read_text())  # what `publish --evaluation FILE` reads
    card = publish_archive(built.archive, tmp_path / "zoo", evaluation=record).card_path.read_text()
    section = card.split("Measured on this archive", 1)[1].split("## Serve it", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[:17] == [
        "| Metric | Value |",
        f"| Date | `{record['date']}` |",
        f"| Model | `{record['model']}` |",
        "| Archive | `squeezenet_v1.1.mar` |",
        f"| Archive SHA-256 | `{record['archive_sha256']}` |",
        f"| {CONTENT_LABEL} | `{record['archive_content_sha256']}` |",
        "| Images | 26 |",
        "| Failed images (counted as wrong) | 2 |",
        f"| Top-1 (%) | {record['top1']} |",
        f"| Top-5 (%) | {record['top5']} |",
        f"| Top-1 correct (images) | {record['top1_correct']} |",
        f"| Top-5 correct (images) | {record['top5_correct']} |",
        "| Model zoo's top-1 (%) | 56.34 |",
        "| Model zoo's top-5 (%) | 79.12 |",
        f"| Top-1 difference (points) | {record['top1_difference']} |",
        f"| Top-5 difference (points) | {record['top5_difference']} |",
        f"| Images per second | {record['images_per_second']} |",
    ]
    assert "| Images evaluated | `all 26` |" in rows
    metrics = section.split("Most confused", 1)[0]
    assert not [row for row in metrics.splitlines() if row.startswith("| `")]  # every key has a label
    assert "| True class | Predicted top-1 | Images |" in rows  # confused pairs: a table, not a blob


# ------------------------------------------------------------------------------- through a real MMS
@pytest.mark.integration
def test_served_counts_match_onnxruntime(mms, built, folder, tmp_path):
    url = mms.inference_url
    run = evaluate(
        tmp_path,
        *("--images", str(folder.path), "--labels", str(folder.labels_file)),
        *("--server", url, "--archive", str(built.archive), "--concurrency", "4"),
    )
    want = expected(folder)
    assert_matches(run, want)
    head = f"squeezenet_v1.1 1.1: {url}/predictions/squeezenet; ground truth labels.txt; images: all 26"
    assert run.out[:6] == table(want, head)
    assert [(f["image"], f["status"]) for f in run.json["failures"]] == [(CORRUPT, 400), (DANGLING, 0)]
    assert "truncated" in run.json["failures"][0]["error"]
    confusions = confusion_lines(want)
    assert run.out[10 : 10 + len(confusions)] == confusions


@pytest.mark.integration
def test_served_with_the_repository_synset_and_a_limit(mms, folder, tmp_path):
    run = evaluate(
        tmp_path,
        *("--images", str(folder.path), "--labels", str(folder.labels_file)),
        *("--server", mms.inference_url, "--limit", "6", "-q"),
    )
    assert_matches(run, expected(folder, sorted(folder.labels)[:6]))
    assert run.json["model"] == "squeezenet" and "archive" not in run.json


class _Overloaded(BaseHTTPRequestHandler):
    """Answers every prediction like an MMS without a free worker."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {"code": 503, "type": "ServiceUnavailableException", "message": "No worker"}
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_error_stops_the_evaluation(folder, tmp_path):
    with ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            run = evaluate(
                tmp_path, "--images", str(folder.path), "--labels", str(folder.labels_file), "--server", url
            )
        finally:
            server.shutdown()
    assert run.code == 7
    assert "answered 503: No worker; stopping" in run.err


def test_an_image_pillow_cannot_handle_is_counted_not_fatal(built, tmp_path):
    """A DDS file (Pillow's plugin raised NotImplementedError) stopped the evaluation with a traceback;
    it is a format the service does not accept now (415), counted as a failed image."""
    import hostile

    images_dir = tmp_path / "val"
    images_dir.mkdir()
    (images_dir / "good.JPEG").write_bytes(images.jpeg(320, 240, 70))
    (images_dir / "bad.JPEG").write_bytes(hostile.dds_unknown_pixel_format())
    labels = tmp_path / "labels.txt"
    labels.write_text("good.JPEG 1\nbad.JPEG 2\n")
    run = evaluate(
        tmp_path / "out",
        "--images",
        str(images_dir),
        "--labels",
        str(labels),
        "--archive",
        str(built.archive),
    )
    assert run.code == 0, run.err
    assert (run.json["images"], run.json["failed"]) == (2, 1)
    [failure] = run.json["failures"]
    assert failure["image"].endswith("bad.JPEG") and failure["status"] == 415


def test_mxnet_says_nothing_between_the_progress_bar_lines(built, tmp_path):
    """MXNet's C++ log line 'Subgraph backend MKLDNN is activated' (one per bound batch size) went
    straight to the terminal, between the progress bar's redraws."""
    images_dir = tmp_path / "val"
    images_dir.mkdir()
    for seed in range(3):
        (images_dir / f"{seed}.JPEG").write_bytes(images.jpeg(320, 240, 80 + seed))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{seed}.JPEG {seed}\n" for seed in range(3)))
    command = [str(Path(sys.executable).with_name("squeezenet-mar")), "evaluate", "--images", str(images_dir)]
    command += ["--labels", str(labels), "--archive", str(built.archive), "--batch-size", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "top1=" in done.stderr  # the progress bar
    assert "is activated" not in done.stderr and "MKLDNN" not in done.stderr + done.stdout


def test_evaluate_then_sign_then_publish_keeps_the_evaluation_bound(built, inprocess_run, tmp_path):
    """Signing changes the archive's SHA-256 but not the content the evaluation recorded."""
    from keys import make_key
    from squeezenet_mar.build import sign_archive
    from squeezenet_mar.signatures import SigningKey, Trust

    record = json.loads(inprocess_run.json_path.read_text())
    key = make_key(tmp_path, "publisher")
    signed = sign_archive(built.archive, SigningKey(key.private), tmp_path / "signed" / built.archive.name)
    assert signed.sha256 != record["archive_sha256"]
    published = publish_archive(
        signed.archive, tmp_path / "zoo", evaluation=record, trust=Trust(key.public), require_signature=True
    )
    assert "Measured on this archive" in published.card_path.read_text()
