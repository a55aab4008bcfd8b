"""Model names and versions an archive may carry: they become MMS model names and the folder names of
a model zoo (``ZOO/<model>/<version>/``), so both follow one strict rule.

- a letter or digit first, then letters, digits, ``.``, ``_`` or ``-``; 64 characters at most for
  a name, 32 for a version; no ``..``;
- never a name the zoo itself uses at its top level, nor one that ends like a file the zoo writes
  (``index.json``, ``README.md``, ``x.lock``, ``x.tmp``, ``x.mar``, ``x.sha256``, ``x.sig``): a model
  named ``index.json`` would turn the zoo's index into a folder.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
RESERVED_SUFFIXES = (".json", ".md", ".lock", ".tmp", ".mar", ".sha256", ".sig", ".partial")


def name_problem(value: object, field: str = "modelName") -> str | None:
    """Why ``value`` cannot be a model name (or, with ``field="modelVersion"``, a version), or None."""
    pattern = _VERSION if field == "modelVersion" else _NAME
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        limit = 32 if field == "modelVersion" else 64
        return (
            f"model.{field} {value!r} must be 1-{limit} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    if value.lower().endswith(RESERVED_SUFFIXES):
        return (
            f"model.{field} {value!r} ends like a file the model zoo writes ({', '.join(RESERVED_SUFFIXES)})"
        )
    return None
