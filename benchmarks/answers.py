"""Do the servers give the same answers? Each server's top-5 for three different real images (the README's
sample photo, a portrait JPEG and a PNG of the tests' scenes) next to the reference: the archive's own
handler run on ONNX Runtime in a child process (``benchmarks.worker answers``, as the tests'
``inprocess_onnxruntime`` runs it), and next to each other. The same answer: the same classes in the
same order, every probability within :data:`TOLERANCE`."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path
from typing import Any

import requests

from .common import ROOT, child_env, run_child

TOLERANCE = 1e-4
REFERENCE = "the archive's handler in a child process on ONNX Runtime (SQUEEZENET_ENGINE=onnxruntime)"

Top = list[dict[str, Any]]  # [{"class": ..., "probability": ...}, ...], most probable first


def answer_images() -> dict[str, bytes]:
    """Three different real images, by name: one photograph and two of the tests' scenes."""
    import images

    return {
        "grace_hopper.jpg": (ROOT / "samples" / "grace_hopper.jpg").read_bytes(),
        "portrait_375x500.jpg": images.jpeg(375, 500, 9),
        "scene_320x240.png": images.png(),
    }


# ------------------------------------------------------------------------------------------ judging
def differences(answer: Top, expected: Top, tolerance: float = TOLERANCE) -> list[str]:
    """What makes ``answer`` differ from ``expected``: other classes (or another order), or a probability
    further than ``tolerance``; empty when they are the same."""
    classes, wanted = [a["class"] for a in answer], [e["class"] for e in expected]
    if classes != wanted:
        return [f"classes {classes} instead of {wanted}"]
    return [
        f"{a['class']}: probability {a['probability']:.7f} instead of {e['probability']:.7f}"
        for a, e in zip(answer, expected, strict=True)
        if abs(a["probability"] - e["probability"]) > tolerance
    ]


def largest_gap(answers: dict[str, Top], expected: dict[str, Top]) -> float | None:
    """The largest probability difference over the images whose classes agree; None when none do."""
    gaps = [
        abs(a["probability"] - e["probability"])
        for image, top in expected.items()
        if [a["class"] for a in answers.get(image, [])] == [e["class"] for e in top]
        for a, e in zip(answers[image], top, strict=True)
    ]
    return max(gaps) if gaps else None


def compare(
    answers: dict[str, Top], expected: dict[str, Top], tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """``answers`` against ``expected``, image by image (a missing or failed answer, on either side, is a
    difference)."""
    found: list[str] = []
    both: dict[str, tuple[Top, Top]] = {}
    for image, top in expected.items():
        answer = answers.get(image)
        if not (isinstance(answer, list) and isinstance(top, list)):
            failed = top if isinstance(answer, list) else answer
            found.append(f"{image}: no top-k answer ({failed!r})"[:300])
            continue
        both[image] = (answer, top)
        found += [f"{image}: {difference}" for difference in differences(answer, top, tolerance)]
    gap = largest_gap({k: a for k, (a, _) in both.items()}, {k: e for k, (_, e) in both.items()})
    return {"same": not found, "largest_probability_gap": gap, "differences": found}


def judge(
    served: dict[str, dict[str, Any]], reference: dict[str, Top], tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """Every configuration's answers against the reference, and every pair of configurations."""
    configurations = {
        name: {**compare(answers, reference, tolerance), "answers": answers}
        for name, answers in served.items()
    }
    return {
        "tolerance": tolerance,
        "reference": REFERENCE,
        "images": list(reference),
        "reference_answers": reference,
        "configurations": configurations,
        "pairs": {
            f"{a}/{b}": compare(served[a], served[b], tolerance) for a, b in itertools.combinations(served, 2)
        },
        "all_same": all(judged["same"] for judged in configurations.values()),
    }


# ---------------------------------------------------------------------------------------- answering
def served_answers(url: str, pictures: dict[str, bytes], timeout: float = 60.0) -> dict[str, Any]:
    """What the server at ``url`` (``.../predictions/<model>``) answers each picture: its top-k, or the
    status and text of a failed answer."""
    found: dict[str, Any] = {}
    for name, body in pictures.items():
        response = requests.post(url, data=body, timeout=timeout)
        found[name] = (
            response.json()
            if response.status_code == 200
            else f"{response.status_code}: {response.text[:200]}"
        )
    return found


def reference_answers(archive: Path, pictures: dict[str, bytes], work: Path) -> dict[str, Top]:
    """The archive's own handler on ONNX Runtime, in a child process (its engine's settings stay there)."""
    model_dir = work / "reference-model"
    with zipfile.ZipFile(archive) as unpacked:
        unpacked.extractall(model_dir)
    folder = work / "reference-images"
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in pictures.items():
        (folder / name).write_bytes(body)
    result, _output = run_child(
        "answers",
        {"model_dir": str(model_dir), "images": [str(folder / name) for name in pictures]},
        env=child_env(SQUEEZENET_ENGINE="onnxruntime"),
    )
    if result["engine"] != "onnxruntime":
        raise RuntimeError(f"the reference ran on {result['engine']}, not on ONNX Runtime")
    return result["answers"]


def inprocess_answers(model_dir: Path, paths: list[Path]) -> dict[str, Any]:
    """The child's side of :func:`reference_answers`: each image's top-k from the handler, loaded here."""
    from squeezenet_mar.inprocess import InProcessService

    service = InProcessService(model_dir, batch_size=1)
    engine = service.handler_module("service")._service.engine.name
    answers = {}
    for path in paths:
        [answer] = service.predict_bytes([path.read_bytes()])
        if answer.status != 200:
            raise RuntimeError(f"{path.name}: the in-process handler answered {answer.status}: {answer.body}")
        answers[path.name] = answer.body
    return {"engine": engine, "answers": answers}
