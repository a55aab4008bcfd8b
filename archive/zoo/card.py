"""The model card: the ``README.md`` published beside each archive in a zoo.

Everything the card shows from the archive (manifest, signature.json, file names) is the archive author's
text: it goes into code spans and code blocks, where Markdown renderers interpret nothing (no HTML, no
links, no tables), never into the card's own Markdown.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import REFERENCE_ACCURACY
from ..layout import Entry

SIGNATURE_FILE = "signature.json"
NOT_RECORDED = "not recorded"

# Row labels of the evaluation table, in this order; keys not listed here are shown by name.
_EVALUATION_LABELS = {
    "date": "Date",
    "model": "Model",
    "archive": "Archive",
    "archive_sha256": "Archive SHA-256",
    "archive_content_sha256": "Archive content SHA-256 (its files; signing leaves it unchanged)",
    "images": "Images",
    "failed": "Failed images (counted as wrong)",
    "top1": "Top-1 (%)",
    "top5": "Top-5 (%)",
    "top1_correct": "Top-1 correct (images)",
    "top5_correct": "Top-5 correct (images)",
    "reference_top1": "Model zoo's top-1 (%)",
    "reference_top5": "Model zoo's top-5 (%)",
    "top1_difference": "Top-1 difference (points)",
    "top5_difference": "Top-5 difference (points)",
    "images_per_second": "Images per second",
    "subset": "Images evaluated",
    "ground_truth": "Ground truth",
    "served_by": "Served by",
}


def render_card(
    manifest: dict[str, Any],
    entries: dict[str, Entry],
    signature: dict[str, Any] | None,
    *,
    name: str,
    url: str,
    sha256: str,
    size: int,
    evaluation: dict[str, Any] | None = None,
    signing: dict[str, Any] | None = None,
) -> str:
    """The Markdown model card (``README.md``) published beside the archive; ``signing`` is the index's
    record of its signature (``release.signing_record``), None for an unsigned archive."""
    model = manifest["model"]
    model_name, version = str(model["modelName"]), str(model["modelVersion"])  # checked by names.py
    description = model.get("description") or manifest.get("description")
    test_only = manifest.get("test_only")
    warning = (
        "**TEST-ONLY archive**: its model says it is a stand-in, not trained weights; its predictions mean "
        "nothing. Its reason, as recorded:\n\n" + _code_block(str(test_only)) + "\n"
        if test_only
        else ""
    )
    sections = [
        f"# {model_name} {version}\n\n{warning}Description, as the archive's manifest gives it:\n\n"
        + (_code_block(description) if description else f"{NOT_RECORDED}.\n"),
        _files_section(entries, name=name, sha256=sha256, size=size),
        _signing_section(signing, name=name),
        _source_section(manifest),
        _input_section(signature),
        _accuracy_section(model_name, evaluation),
        _serve_section(name=name, url=url),
    ]
    return "\n".join(sections)


def _files_section(entries: dict[str, Entry], *, name: str, sha256: str, size: int) -> str:
    rows = [f"| `{name}` | {size} | `{sha256}` |"]
    rows += [
        f"| {_code(entry.name)} (inside) | {entry.size} | `{entry.sha256}` |"
        for _, entry in sorted(entries.items())
    ]
    return (
        "## Files and checksums\n\n"
        "| File | Bytes | SHA-256 |\n|---|---:|---|\n" + "\n".join(rows) + "\n\n"
        f"Check a download with `sha256sum -c {name}.sha256` (the file lies beside the archive).\n"
    )


def _signing_section(signing: dict[str, Any] | None, *, name: str) -> str:
    head = "## Signature\n\n"
    if signing is None:
        return head + ("Not signed. The checksums above show the download is intact, not who published it.\n")
    verify = f"squeezenet-mar verify {name} --trusted-key PUBLISHER.pub.pem"
    if signing.get("verified_by_publisher"):
        who = (
            f"Signed (OpenSSF model signing, {signing.get('mode')} mode) by the key with SHA-256 fingerprint "
            f"`{signing.get('key_sha256')}`; the publisher verified it against that key."
        )
    else:
        who = "Signed (OpenSSF model signing); the publisher did not verify the signature against a key."
    return (
        head + f"{who} The bundle is inside the archive (`MAR-INF/model.sig`) and beside it "
        f"(`{name}.sig`). Check it with the publisher's public key before you serve the archive:\n\n"
        f"```sh\n{verify}\n```\n\n"
        "A signature says who published these bytes, not that the code is harmless.\n"
    )


def _source_section(manifest: dict[str, Any]) -> str:
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    publisher = manifest.get("publisher") if isinstance(manifest.get("publisher"), dict) else {}
    engine_text = " ".join(str(engine[key]) for key in ("engineName", "engineVersion") if engine.get(key))
    author = " ".join(
        part
        for part in (publisher.get("author"), f"<{publisher['email']}>" if publisher.get("email") else "")
        if part
    )
    rows = [
        ("Source URL", source.get("url")),
        ("Source file", source.get("file")),
        ("Source MD5", source.get("md5")),
        ("Source SHA-256", source.get("sha256")),
        ("ONNX opset", source.get("opset")),
        ("Engine", engine_text),
        ("Handler", manifest.get("model", {}).get("handler")),
        ("Runtime", manifest.get("runtime")),
        ("Publisher", author),
    ]
    return "## Source\n\n" + _table(("Field", "Value"), [(k, _or_not_recorded(v)) for k, v in rows])


def _shape(shape: Any) -> str:
    """``[0, 3, 224, 224]`` (MMS's signature: 0 is the batch size) as ``N x 3 x 224 x 224``."""
    if (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        return " x ".join("N" if i == 0 and d == 0 else str(d) for i, d in enumerate(shape))
    return _or_not_recorded(shape)


def _input_section(signature: dict[str, Any] | None) -> str:
    head = "## Input and preprocessing\n\n"
    if signature is None:
        return head + f"{NOT_RECORDED} (the archive has no {SIGNATURE_FILE}).\n"
    pre = signature.get("preprocessing") or {}
    post = signature.get("postprocessing") or {}
    inputs = [item for item in signature.get("inputs") or [] if isinstance(item, dict)]
    shapes = ", ".join(f"{_code(item.get('data_name'))} {_shape(item.get('data_shape'))}" for item in inputs)
    field = _code(inputs[0].get("data_name")) if inputs else NOT_RECORDED
    steps = [
        f"Request body: one image ({_or_not_recorded(signature.get('input_type'))}), the bytes of the file "
        f"as the raw HTTP body (`curl -T photo.jpg`, or `Content-Type: application/octet-stream`) or as "
        f"the multipart field {field}.",
        f"Decoded and converted to {_or_not_recorded(pre.get('color_mode'))}.",
        f"Shorter side resized to {_or_not_recorded(pre.get('resize_shorter_side'))} px "
        f"({_or_not_recorded(pre.get('interpolation'))}).",
        f"Centre crop {_square(pre.get('crop_size'))}.",
        f"Pixels scaled by {_or_not_recorded(pre.get('scale'))}, then normalised per channel "
        f"with mean {_or_not_recorded(pre.get('mean'))} and std {_or_not_recorded(pre.get('std'))}.",
        f"Model input: {shapes or NOT_RECORDED} (N: the batch size), "
        f"layout {_or_not_recorded(pre.get('layout'))}.",
        f"Output: {_or_not_recorded(post.get('function'))} over the {_classes(signature)} classes; "
        f"the answer lists the top {_or_not_recorded(post.get('topk'))} as "
        '`[{"class": "<synset line>", "probability": p}, ...]` '
        f"({_or_not_recorded(signature.get('output_type'))}).",
    ]
    return head + "".join(f"{number}. {step}\n" for number, step in enumerate(steps, start=1))


def _accuracy_section(model_name: str, evaluation: dict[str, Any] | None) -> str:
    text = "## Accuracy\n\n"
    if evaluation:
        # Scalars in a table; the per-image failures stay in the JSON, the confused pairs get a table.
        scalars = {k: v for k, v in evaluation.items() if not isinstance(v, (list, dict))}
        ordered = [key for key in _EVALUATION_LABELS if key in scalars]
        ordered += sorted(key for key in scalars if key not in _EVALUATION_LABELS)
        rows = [
            (_EVALUATION_LABELS.get(key) or _code(key), _or_not_recorded(scalars[key])) for key in ordered
        ]
        text += "Measured on this archive (`squeezenet-mar evaluate`):\n\n" + _table(
            ("Metric", "Value"), rows
        )
        confusions = [c for c in evaluation.get("confusions") or [] if isinstance(c, dict)]
        if confusions:
            pairs = [
                (
                    _code(c.get("true_class")),
                    _code(c.get("predicted_class")),
                    _or_not_recorded(c.get("count")),
                )
                for c in confusions
            ]
            text += "\nMost confused classes (true class -> predicted top-1):\n\n"
            text += _table(("True class", "Predicted top-1", "Images"), pairs)
    else:
        text += (
            "Accuracy of this archive: not measured (measure it with `squeezenet-mar evaluate` and "
            "publish with `--evaluation`).\n"
        )
    reference = REFERENCE_ACCURACY.get(model_name)
    if reference:
        text += (
            f"\nFor reference, the ONNX model zoo reports top-1 {reference['top1']:.2f} % and top-5 "
            f"{reference['top5']:.2f} % for its own SqueezeNet 1.1 weights on the {reference['dataset']} "
            f"({reference['page']}): the zoo's figure, not a measurement of this archive.\n"
        )
    return text


def _serve_section(*, name: str, url: str) -> str:
    return (
        "## Serve it\n\n"
        "On any Multi Model Server (1.1.11 tested), from a local model store (the folder holding the "
        "downloaded archive):\n\n"
        f"```sh\nmulti-model-server --start --model-store DIR --models squeezenet={name}\n```\n\n"
        "Straight from this zoo, where HOST/zoo is the address the zoo folder is served at:\n\n"
        "```sh\nmulti-model-server --start --model-store DIR "
        f"--models squeezenet=http://HOST/zoo/{url}\n```\n\n"
        "Then ask for a prediction (the image file's bytes are the request body):\n\n"
        "```sh\ncurl -X POST http://127.0.0.1:8080/predictions/squeezenet -T photo.jpg\n```\n"
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _code(value: Any) -> str:
    """Any value as one inline code span, safe in a table cell: Markdown and HTML inside it are
    shown as text. Newlines become spaces; ``|`` is escaped (GitHub's table rule, even in code)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = " ".join(text.split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return (
        f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"
    )


def _code_block(value: Any) -> str:
    """A fenced code block holding ``value`` as text, whatever backticks it contains."""
    text = str(value).replace("\r", "")
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _or_not_recorded(value: Any) -> str:
    """Numbers (and lists of them) as they are, they cannot carry Markdown; anything else as code."""
    if value is None or value == "":
        return NOT_RECORDED
    if _is_number(value) or (isinstance(value, list) and value and all(_is_number(v) for v in value)):
        return json.dumps(value)
    return _code(value)


def _square(size: Any) -> str:
    return f"{size}x{size}" if _is_number(size) else _or_not_recorded(size)


def _classes(signature: dict[str, Any]) -> str:
    outputs = signature.get("outputs") or [{}]
    shape = outputs[0].get("data_shape") if isinstance(outputs[0], dict) else None
    return _or_not_recorded(shape[-1]) if isinstance(shape, list) and shape else NOT_RECORDED
