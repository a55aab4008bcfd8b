"""`make test`'s lint does not depend on what else lies in the checkout: the README's `keygen` writes a
`keys/` folder at the root, which ruff used to take for the first-party module the tests import as
`keys` (tests/keys.py), re-sorting their imports and failing the lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from harness import ROOT

RUFF = Path(sys.executable).with_name("ruff")


def test_a_keys_folder_at_the_root_changes_no_import_order(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / "pyproject.toml", checkout)
    for folder in ("archive", "handler", "tests", "benchmarks"):
        shutil.copytree(ROOT / folder, checkout / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "keys").mkdir()
    (checkout / "keys" / "publisher.pem").write_text("not a key: only the folder matters\n")
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "I", "."],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
