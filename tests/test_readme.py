"""The README's `curl` lines, run exactly as written (only the address changed to the test server's)
against a real MMS, on the server `squeezenet-mar serve` configures and on a stock one, and against a
stock TorchServe 0.12 (tests/torchserve.py; ONNX Runtime, no MXNet there); each answer
must be the one the README shows (same model: the seeded test model the README's run used), up to the
rounding another CPU may do (see :func:`same_answer_on_any_cpu`)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import ROOT

pytestmark = pytest.mark.integration

README_ADDRESS = "http://127.0.0.1:8080"

# The README's answers were captured on one CPU and this test runs on any. The model file is the same
# everywhere (tests/squeezenet_onnx.py builds it bit for bit, tests/test_test_model.py checks), but
# MXNet's oneDNN compiles other convolution kernels for other CPUs (AVX2, AVX-512, ...), whose float32
# sums round differently. Measured on the seeded model, 42 images x 1000 classes, oneDNN held to AVX2
# or SSE4.1 (DNNL_MAX_CPU_ISA) against its AVX-512 kernels, and ONNX Runtime against MXNet: at most
# 1.2e-5 apart, and at most 1.2e-4 apart relative to the probability, alike at every magnitude from 0.7
# down to 1e-9 (a softmax turns score errors into relative ones: dp_i / p_i = dz_i - sum_j p_j dz_j).
# The OpenBLAS kernel (OPENBLAS_CORETYPE) changes nothing served. Both bounds below keep a margin of 8:
# 1e-4 (the engines' parity bound in the other tests) and 1e-3 of the probability, whichever is smaller,
# so that the order of small probabilities (1e-4 and below) is still checked.
ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-3


def tolerance(probability: float) -> float:
    return min(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * probability)


def could_swap(higher: float, lower: float) -> bool:
    """Two probabilities close enough that rounding on another CPU could put them in either order."""
    return higher - lower <= tolerance(higher) + tolerance(lower)


def same_answer_on_any_cpu(got: list[dict], shown: list[dict], next_probability: float) -> bool:
    """``got`` is the answer ``shown`` in the README, up to another CPU's rounding: probabilities
    position by position within :func:`tolerance`; classes in the same order, except in a run of
    probabilities each of which :func:`could_swap` with the next, where they are compared as sets. If
    the last run could swap with ``next_probability``, the first one below the README's cut, that run
    may also hold classes the README does not show."""
    if len(got) != len(shown):
        return False
    got_p = [item["probability"] for item in got]
    shown_p = [item["probability"] for item in shown]
    if any(abs(g - s) > tolerance(s) for g, s in zip(got_p, shown_p, strict=True)):
        return False
    following = [*shown_p[1:], next_probability]
    start = 0
    for end, (probability, below) in enumerate(zip(shown_p, following, strict=True), start=1):
        if could_swap(probability, below):
            if end < len(shown):
                continue
            return True  # the earlier runs matched; this one is tied with classes below the cut
        if {x["class"] for x in got[start:end]} != {x["class"] for x in shown[start:end]}:
            return False
        start = end
    return True


def readme_commands(program: str) -> list[tuple[str, list[str]]]:
    """(command line, the output lines the README shows after it) for every ``$ program ...`` line in
    the README's code blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S):
        lines = block.splitlines()
        for number, line in enumerate(lines):
            if line.startswith(f"$ {program} "):
                rest = lines[number + 1 :]
                end = next((i for i, later in enumerate(rest) if later.startswith("$ ")), len(rest))
                found.append((line[2:], rest[:end]))
    return found


def sent_file(command: list[str]) -> Path:
    """The file a curl command sends: ``-T FILE``, ``-F name=@FILE`` or ``--data-binary @FILE``."""
    for option, value in zip(command, command[1:], strict=False):
        if option == "-T":
            return ROOT / value
        if option in ("-F", "--data-binary") and "@" in value:
            return ROOT / value.split("@", 1)[1].split(";")[0]
    raise ValueError(f"no file sent in {shlex.join(command)}")


# The prediction requests (the metrics example shows counters of its own run, not an answer to check).
CURL_LINES = [(line, shown) for line, shown in readme_commands("curl") if "/predictions/" in line]


def test_the_readme_shows_curl_lines_with_their_answers():
    assert len(CURL_LINES) >= 4
    assert all(shown for _, shown in CURL_LINES)
    assert not [line for line, _ in CURL_LINES if "--data-binary" in line and "Content-Type" not in line]


TWO = [("a", 0.6), ("b", 0.3)]
TIED = [("a", 0.6), ("b", 3.0e-4), ("c", 2.9995e-4)]  # b and c 5e-8 apart: either order


@pytest.mark.parametrize(
    ("shown", "next_probability", "got", "same"),
    [
        (TWO, 0.05, TWO, True),
        (TWO, 0.05, [("a", 0.60005), ("b", 0.29995)], True),  # 5e-5 apart
        (TWO, 0.05, [("a", 0.6002), ("b", 0.2998)], False),  # 2e-4 apart
        (TWO, 0.05, [("b", 0.6), ("a", 0.3)], False),  # far apart: their order counts
        (TWO, 0.05, [("a", 0.6), ("z", 0.3)], False),  # not tied with the first class below the cut
        (TWO, 0.2999999, [("a", 0.6), ("z", 0.3)], True),  # tied with it: z may have been below
        (TIED, 1e-6, [("a", 0.6), ("c", 3.0e-4), ("b", 2.9995e-4)], True),
        (TIED, 1e-6, [("a", 0.6), ("b", 3.0e-4), ("c", 2.99e-4)], False),  # 1e-6 off: more than 1e-3 of it
        (TIED, 1e-6, [("a", 0.6), ("b", 3.0e-4)], False),
    ],
)
def test_an_answer_from_another_cpu_is_the_one_shown_up_to_rounding(shown, next_probability, got, same):
    def answer(pairs: list[tuple[str, float]]) -> list[dict]:
        return [{"class": c, "probability": p} for c, p in pairs]

    assert same_answer_on_any_cpu(answer(got), answer(shown), next_probability) is same


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
@pytest.mark.parametrize("server_name", ["mms", "plain_mms", "torchserve"])
@pytest.mark.parametrize("index", range(len(CURL_LINES)))
def test_each_readme_curl_line_gets_the_answer_shown(request, inprocess, server_name, index):
    server = request.getfixturevalue(server_name)
    line, shown = CURL_LINES[index]
    command = shlex.split(line.replace(README_ADDRESS, server.inference_url))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    if shown[0].startswith("HTTP/"):
        statuses = [row for row in got if row.startswith("HTTP/")]
        assert statuses[-1].split()[1] == [row for row in shown if row.startswith("HTTP/")][-1].split()[1]
        assert json.loads(got[-1]) == json.loads(shown[-1])
    else:
        expected = json.loads("\n".join(shown))
        [longer] = inprocess.predict_bytes([sent_file(command).read_bytes()], topk=len(expected) + 1)
        assert same_answer_on_any_cpu(json.loads(done.stdout), expected, longer.body[-1]["probability"])
