"""Decode memory (issue 20 items 8 and 10, issue 19 item 3): the handler's estimate of what decoding
an image holds at its peak is honest, the attacks are refused before they cost anything, and the
budget follows the memory the process may use.

- Every accepted format, mode and bit depth (``images.memory_matrix``), at the size limits, goes
  through the real handler (``preprocess_image`` of the repository's ``handler/``) in a child
  process of its own: the resident memory the request adds at its peak (``VmHWM`` after
  ``/proc/self/clear_refs`` reset it, minus ``VmRSS`` then) is at most the handler's own estimate
  for those bytes (``images.estimate_request``) plus ``ALLOWANCE``.
- Each attack of the issues (``hostile_images``), under the budget of a 1 GiB pod with 2 workers,
  is refused (413 naming the budget, 415, 400) with a peak under ``REFUSED_PEAK``.
- The budget rule (``memory.decode_budget``) on given limits, the cgroup files it reads, and a tight
  budget answering 413 for an image that a roomy one accepts.

A fresh child per image: a process that decoded before keeps freed memory in its heap and would
reuse it, hiding the next peak. Sizes and peaks are printed (``pytest -s``) for the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_images
import images
from harness import ROOT
from test_hostile_inputs import DECODE_BOMBS

MiB = 1024 * 1024
ALLOWANCE = 4 * MiB  # page-granular accounting, the allocator's own bookkeeping
REFUSED_PEAK = 16 * MiB  # what a refused request may cost (the header walk, Pillow's open)
POD = {"limit": 1 << 30, "workers": 2}  # deploy/kubernetes: 1 GiB, SQUEEZENET_WORKERS=2

if not Path("/proc/self/clear_refs").exists():  # pragma: no cover - Linux only
    pytest.skip("peak memory is read from /proc (Linux)", allow_module_level=True)

CHILD = r"""
import json, re, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from squeezenet_handler import images, memory
from squeezenet_handler.errors import ServiceError
from squeezenet_handler.signature import parse_signature

raw = json.loads(Path(sys.argv[2]).read_text())
options = json.loads(sys.argv[4])
if "jpeg_draft" in options:
    raw["preprocessing"]["jpeg_draft"] = options["jpeg_draft"]
pre = images.prepare_decoding(parse_signature(raw).preprocessing)
if "budget" in options:
    limit, workers = options["budget"]["limit"], options["budget"]["workers"]
    given = (limit, "cgroup memory.max"), (workers, "SQUEEZENET_WORKERS")
    pre = pre.with_budget(memory.decode_budget(pre.max_decode_bytes, *given))
data = Path(sys.argv[3]).read_bytes()

def status(key):
    found = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) * 1024

answer = {"body": len(data), "budget": pre.memory_budget.bytes}
try:
    estimate = images.estimate_request(data, pre)
    answer.update(estimate=estimate.peak, stage=estimate.stage)
except ServiceError:
    answer["estimate"] = None
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = status("VmRSS")
try:
    images.preprocess_image(data, pre)
    answer.update(status=200, message="")
except ServiceError as exc:
    answer.update(status=exc.status, message=str(exc))
answer["peak"] = status("VmHWM") - before
print(json.dumps(answer))
"""


def decode_in_child(
    body: bytes, tmp_path: Path, options: dict[str, object] | None = None
) -> dict[str, object]:
    """The handler's answer, estimate and measured peak for ``body``, in a fresh Python."""
    path = tmp_path / "image.bin"
    path.write_bytes(body)
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(ROOT / "handler"),
        str(ROOT / "signature.json"),
        str(path),
        json.dumps(options or {}),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(value: object) -> str:
    return "-" if value is None else f"{int(value) / MiB:.1f} MiB"  # type: ignore[call-overload]


MATRIX = images.memory_matrix()


@pytest.mark.parametrize("name", list(MATRIX))
def test_an_accepted_image_decodes_within_the_estimate(name, tmp_path):
    build, options = MATRIX[name]
    body = build()  # type: ignore[operator]
    got = decode_in_child(body, tmp_path, options)
    print(
        f"\n{name}: {len(body)} bytes, peak {mib(got['peak'])}, estimate {mib(got['estimate'])}",
        got.get("stage"),
    )
    assert got["status"] == 200, got["message"]
    assert got["estimate"] is not None
    assert got["peak"] <= got["estimate"] + ALLOWANCE, got
    assert got["estimate"] <= got["budget"]


# The attacks of issues 19 and 20 (test_hostile_inputs.DECODE_BOMBS), and the SRE's image, which is
# within every size limit but not within a 1 GiB pod's budget.
ATTACKS = {
    **DECODE_BOMBS,
    "png_rgba16_39.8_megapixels": (
        hostile_images.png_rgba16,
        413,
        "cgroup memory.max 1073741824 shared by 2",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_is_refused_before_it_costs_memory(name, tmp_path):
    build, status, word = ATTACKS[name]
    got = decode_in_child(build(), tmp_path, {"budget": POD})
    print(f"\n{name}: {got['status']} peak {mib(got['peak'])}: {got['message']}")
    assert got["status"] == status and word.lower() in str(got["message"]).lower(), got
    assert got["peak"] <= REFUSED_PEAK, got


def test_a_float_tiff_of_40_megapixels_decodes_within_the_budget_or_is_refused(tmp_path):
    """The 240 KB float TIFF of issue 20 (703 MB before) is an honest 200 MB decode now: accepted
    under the default budget with its peak inside the estimate, refused under a 1 GiB pod's."""
    body = hostile_images.tiff_float()
    roomy = decode_in_child(body, tmp_path)
    assert roomy["status"] == 200 and roomy["peak"] <= roomy["estimate"] + ALLOWANCE, roomy
    tight = decode_in_child(body, tmp_path, {"budget": POD})
    print(
        f"\nfloat TIFF: peak {mib(roomy['peak'])}, estimate {mib(roomy['estimate'])}; pod: {tight['message']}"
    )
    if tight["status"] == 200:
        assert tight["peak"] <= tight["budget"], tight
    else:
        assert (
            tight["status"] == 413 and "cgroup memory.max 1073741824 shared by 2 workers" in tight["message"]
        )
        assert tight["peak"] <= REFUSED_PEAK, tight


# ------------------------------------------------------------------------------- the budget rule
def budget_module():
    from squeezenet_handler import memory  # the repository's handler/ (an editable install)

    return memory


@pytest.mark.parametrize(
    ("limit", "workers", "expected"),
    [
        (None, 2, 512 * MiB),  # no limit: the signature's
        (1536 * MiB, 2, (1536 - 640 - 2 * 224) // 2 * MiB),  # the Kubernetes pod: 224 MiB each
        (1 << 30, 1, (1024 - 640 - 224) * MiB),  # one worker: 160 MiB
        (1 << 30, 2, 32 * MiB),  # too small for 2 workers and large bodies: the minimum, said so
        (2 << 30, 4, (2048 - 640 - 4 * 224) // 4 * MiB),  # 128 MiB
        (512 * MiB, 2, 32 * MiB),
        (64 << 30, 8, 512 * MiB),
    ],
)
def test_the_budget_is_the_signatures_or_the_memory_limit_shared_by_the_workers(limit, workers, expected):
    memory = budget_module()
    given = None if limit is None else (limit, "cgroup memory.max")
    budget = memory.decode_budget(512 * MiB, given, (workers, "SQUEEZENET_WORKERS"))
    assert budget.bytes == expected
    if expected == 512 * MiB:
        assert budget.source == "signature.json max_decode_bytes"
    else:
        assert f"cgroup memory.max {limit} shared by {workers} workers (SQUEEZENET_WORKERS)" in budget.source
    assert (budget.source.startswith("the minimum")) == (expected == memory.MIN_BUDGET)


def test_the_cgroup_limit_is_the_smallest_on_the_way_to_the_root(tmp_path):
    memory = budget_module()
    root = tmp_path / "cgroup"
    (root / "kubepods" / "pod1" / "mms").mkdir(parents=True)
    (root / "memory.max").write_text("max\n")
    (root / "kubepods" / "memory.max").write_text("8589934592\n")
    (root / "kubepods" / "pod1" / "memory.max").write_text("1073741824\n")
    (root / "kubepods" / "pod1" / "mms" / "memory.max").write_text("max\n")
    self_cgroup = tmp_path / "self_cgroup"
    self_cgroup.write_text("0::/kubepods/pod1/mms\n")
    assert memory.cgroup_memory_limit(root, self_cgroup) == (1 << 30, "cgroup memory.max")
    # Inside a container the path names the host's hierarchy; the container's root file is read.
    self_cgroup.write_text("0::/system.slice/docker-abc.scope\n")
    (root / "memory.max").write_text("2147483648\n")
    assert memory.cgroup_memory_limit(root, self_cgroup) == (2 << 30, "cgroup memory.max")


def test_a_cgroup_v1_limit_and_no_limit(tmp_path):
    memory = budget_module()
    root = tmp_path / "cgroup"
    (root / "memory" / "docker" / "abc").mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "none"
    self_cgroup = tmp_path / "self_cgroup"
    self_cgroup.write_text("4:memory:/docker/abc\n0::/\n")
    assert memory.cgroup_memory_limit(root, self_cgroup) is None
    (root / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text("536870912\n")
    assert memory.cgroup_memory_limit(root, self_cgroup) == (512 * MiB, "cgroup memory.limit_in_bytes")


@pytest.mark.parametrize(
    ("environ", "cores", "expected"),
    [
        ({"SQUEEZENET_WORKERS": "3"}, 2, (3, "SQUEEZENET_WORKERS")),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "4"}, 2, (4, "SAGEMAKER_MODEL_SERVER_WORKERS")),
        ({"SQUEEZENET_WORKERS": ""}, 2, (2, "one per usable core")),
        ({}, 1, (1, "one per usable core")),
    ],
)
def test_the_workers_are_the_configured_ones_else_one_per_core(environ, cores, expected):
    assert budget_module().worker_count(environ, cores) == expected


def test_a_tight_budget_answers_413_for_an_image_a_roomy_one_accepts():
    """The same 20-megapixel 16-bit RGBA PNG through the real preprocessing: accepted with the
    signature's budget, refused with that of a 1.5 GiB pod running 3 workers, the 413 naming the budget
    and where it came from."""
    memory = budget_module()
    from squeezenet_handler.errors import PayloadTooLarge
    from squeezenet_handler.images import estimate_request, preprocess_image
    from squeezenet_handler.signature import read_signature

    body = images.png_written(4500, 4500, "RGBA", 16)
    roomy = read_signature(ROOT / "signature.json").preprocessing
    tight = roomy.with_budget(
        memory.decode_budget(
            roomy.max_decode_bytes, (1536 * MiB, "cgroup memory.max"), (3, "SQUEEZENET_WORKERS")
        )
    )
    assert estimate_request(body, roomy).peak > tight.memory_budget.bytes
    assert preprocess_image(body, roomy).shape == (3, 224, 224)
    with pytest.raises(PayloadTooLarge) as refused:
        preprocess_image(body, tight)
    message = str(refused.value)
    assert f"the limit is {tight.memory_budget.bytes} bytes" in message
    assert "memory budget: cgroup memory.max 1610612736 shared by 3 workers (SQUEEZENET_WORKERS)" in message


def test_loading_sets_pillows_own_limits_to_ours(service):
    """The handler's load sets Pillow's pixel limit to the signature's (Pillow then warns above it
    inside Image.open, which the handler makes an error) and its PNG text limit."""
    from PIL import Image, PngImagePlugin

    signature = json.loads((ROOT / "signature.json").read_text())["limits"]
    assert Image.MAX_IMAGE_PIXELS == signature["max_image_pixels"]
    assert PngImagePlugin.MAX_TEXT_MEMORY == signature["max_png_text_bytes"]
    errors = service.handler_module("errors")
    with pytest.raises(errors.PayloadTooLarge, match="too many pixels"):
        with service.handler_module("images").pillow_errors(100):
            Image._decompression_bomb_check((6400, 6400))  # what every plugin calls
