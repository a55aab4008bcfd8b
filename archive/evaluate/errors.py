""":class:`EvaluationError`, the evaluation's own error (exit code 1). A refused archive entry stays a
``VerifyError`` and a server's 5xx a ``ClientError``, each with its own exit code."""

from __future__ import annotations

from ..errors import ArchiveToolError


class EvaluationError(ArchiveToolError):
    """Bad evaluation inputs: image folder, labels, synset, or an archive whose handler does not load."""

    exit_code = 1
