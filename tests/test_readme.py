"""The README's `curl` lines, run exactly as written (only the address changed to the test server's)
against a real MMS, on the server `squeezenet-mar serve` configures and on a stock one; each answer
must be the one the README shows (same model: the seeded test model the README's run used)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
from harness import ROOT
from test_serving import same_prediction

pytestmark = pytest.mark.integration

README_ADDRESS = "http://127.0.0.1:8080"


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


CURL_LINES = readme_commands("curl")


def test_the_readme_shows_curl_lines_with_their_answers():
    assert len(CURL_LINES) >= 4
    assert all(shown for _, shown in CURL_LINES)
    assert not [line for line, _ in CURL_LINES if "--data-binary" in line and "Content-Type" not in line]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
@pytest.mark.parametrize("server_name", ["mms", "plain_mms"])
@pytest.mark.parametrize("index", range(len(CURL_LINES)))
def test_each_readme_curl_line_gets_the_answer_shown(request, server_name, index):
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
        assert same_prediction(json.loads(done.stdout), json.loads("\n".join(shown)))
