"""The seeded test model (tests/squeezenet_onnx.py) is the same file on every x86-64 CPU.

Every test, and the README's outputs, rest on it: its bytes must depend on the seed alone, not on the
BLAS kernel numpy picks for the CPU. The file is built in child processes under several OpenBLAS kernels
(``OPENBLAS_CORETYPE``, read once when numpy loads), each of which must give the pinned SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import squeezenet_onnx
from harness import ROOT
from squeezenet_onnx import TEST_ONLY_KEY, build_squeezenet11

# build_squeezenet11(path, seed=0) with weights_as_inputs True (the zoo's layout, IR 3) and False (IR 4).
# A new value here is a new model: the README's outputs must be captured again with it.
PINNED_SHA256 = {
    "inputs": "51c8859471935db71c20d13952e467d82b4d6be8bfef2b91d459de23f7c9bf52",
    "initializers_only": "883e2fae8706b2198606812fde91f6ec6b5cf796ac32b6bc4a2345ba171faf30",
}

# OpenBLAS kernels to force, with the CPU flags each needs (forcing one the CPU lacks would crash numpy).
# None is OpenBLAS's own choice for this CPU. Cooperlake's threaded dgemm returns wrong products in the
# OpenBLAS numpy 1.23 ships (OpenMathLib/OpenBLAS#5267): generation must notice and still be exact.
KERNELS: dict[str | None, set[str]] = {
    None: set(),
    "Haswell": {"avx2", "fma"},
    "SkylakeX": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"},
    "Cooperlake": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"},
}

CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from squeezenet_onnx import build_squeezenet11
build_squeezenet11(Path(sys.argv[1]), seed=0, weights_as_inputs=sys.argv[2] == "inputs")
"""


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_in_child(target: Path, variant: str, kernel: str | None) -> str:
    """Build the seed-0 model in a fresh interpreter whose OpenBLAS uses ``kernel``; its SHA-256."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    env["OPENBLAS_VERBOSE"] = "2"  # OpenBLAS names the kernel it loaded on stderr: "Core: Haswell"
    if kernel:
        env["OPENBLAS_CORETYPE"] = kernel
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), variant],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    if kernel:
        assert f"Core: {kernel}" in done.stderr, done.stderr
    return sha256(target)


# Both variants under every kernel, except the slow integer fallback (seconds), run for one variant.
CASES = [(k, v) for k in KERNELS for v in sorted(PINNED_SHA256) if k != "Cooperlake" or v == "inputs"]


@pytest.mark.parametrize(("kernel", "variant"), CASES, ids=[f"{k or 'default'}-{v}" for k, v in CASES])
def test_every_blas_kernel_builds_the_pinned_file(tmp_path, kernel, variant):
    if not KERNELS[kernel] <= cpu_flags():
        pytest.skip(f"this CPU cannot run OpenBLAS's {kernel} kernel")
    assert build_in_child(tmp_path / "model.onnx", variant, kernel) == PINNED_SHA256[variant]


def test_the_session_model_is_the_pinned_file(onnx_model):
    assert sha256(onnx_model) == PINNED_SHA256["inputs"]


def test_the_file_says_it_is_a_test_model(onnx_model):
    model = onnx.load(str(onnx_model))
    assert model.producer_name == "squeezenet_onnx (TEST-ONLY random weights)"
    properties = {prop.key: prop.value for prop in model.metadata_props}
    assert TEST_ONLY_KEY == "squeezenet_mar.test_only"
    assert "random" in properties[TEST_ONLY_KEY] and "mean nothing" in properties[TEST_ONLY_KEY]
    assert "\n" not in properties[TEST_ONLY_KEY]


def test_the_file_keeps_the_zoo_layout(onnx_model):
    model = onnx.load(str(onnx_model))
    assert (model.ir_version, [(o.domain, o.version) for o in model.opset_import]) == (3, [("", 7)])
    inputs = [i.name for i in model.graph.input]
    assert inputs[0] == "data" and set(inputs[1:]) == {t.name for t in model.graph.initializer}
    assert [o.name for o in model.graph.output] == ["squeezenet0_flatten0_reshape0"]


@pytest.mark.parametrize(("seed", "num_classes"), [(1, 1000), (12345, 1000), (0, 10)])
def test_other_seeds_and_sizes_build_within_the_exactness_bound(tmp_path, seed, num_classes):
    """Generation raises ArithmeticError if a calibration sum could leave float64's exact integers."""
    path = build_squeezenet11(tmp_path / "model.onnx", seed=seed, num_classes=num_classes)
    assert sha256(path) != PINNED_SHA256["inputs"]
    onnx.checker.check_model(str(path))


def test_the_exactness_bound_is_enforced():
    x = np.full((2, 3), 2.0**40)
    weight = np.full((3, 2), 2.0**12)  # sums up to 3 * 2**52 > 2**53
    with pytest.raises(ArithmeticError, match="2\\*\\*53"):
        squeezenet_onnx._exact_affine(x, weight, np.zeros(2), magnitude=2**40)
    squeezenet_onnx._exact_affine(x, weight / 2, np.zeros(2), magnitude=2**40)  # 3 * 2**51 is fine
