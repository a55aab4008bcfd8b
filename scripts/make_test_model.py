"""Write the seeded SqueezeNet 1.1-shaped ONNX model the tests use, for trying the pipeline offline.

This is NOT the trained model: its weights are random (seeded), so its classes mean nothing. It
only has the zoo file's layout (opset 7, input ``data`` 1x3x224x224, 1000 scores out). Nothing in
the product uses it unless you pass it yourself, e.g. ``make serve MODEL=build/TEST-ONLY-...onnx``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from squeezenet_onnx import build_squeezenet11  # noqa: E402  (tests/ is not a package)

DEFAULT = ROOT / "build" / "TEST-ONLY-random-weights-squeezenet1.1.onnx"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=DEFAULT, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    build_squeezenet11(args.output, seed=args.seed)
    print(f"wrote {args.output} (random weights: for trying the pipeline, not for predictions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
