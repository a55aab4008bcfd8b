"""SqueezeNet 1.1 (ONNX model zoo) as a Multi Model Server custom service: the entry point MMS imports
by its bare name from the unpacked archive (handler spec ``squeezenet_service:handle``).

The code is the package ``squeezenet_handler`` packed beside this file (see its ``__init__``). MMS puts
the model folder on the worker's ``PYTHONPATH``; this module imports the package from the ``.py``
files beside it and nothing else: never from bytecode (a ``.pyc`` in its ``__pycache__``, even an
unchecked-hash one that Python would run without looking at the source), an extension module or a
look-alike package planted in the folder, nor from another copy on the path. So the code that checks
the archive at load (``squeezenet_handler.trust``) is the archive's signed source, and every file it
did not sign is refused. Compiling the package costs ~25 ms per worker start; bytecode for everything
else (numpy, MXNet, ...) is used as usual.

Pipeline (numbers from ``signature.json``, never from code constants)::

    bytes -> decode (Pillow, EXIF orientation, any mode -> RGB) -> shorter side to 256 (bilinear)
          -> centre crop 224x224 -> [0, 1] -> (x - mean) / std -> NCHW float32
          -> one forward pass for the whole batch -> softmax -> top k
          -> [{"class": "<synset line>", "probability": p}, ...] per request

A bad request gets its own 4xx with a JSON body naming the cause (``squeezenet_handler.errors``); the
rest of the batch is answered.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, ModuleType

PACKAGE = "squeezenet_handler"
PACKAGE_DIR = Path(__file__).parent / PACKAGE


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the module's source at every import: never reads or writes bytecode."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _PackageSourceFinder(importlib.abc.MetaPathFinder):
    """``squeezenet_handler.<name>`` is ``<name>.py`` of this archive's package folder, or nothing."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PACKAGE + ".") or list(path or ()) != [str(self.package_dir)]:
            return None  # not a module of this archive's package (another copy's, in a test process)
        name = fullname[len(PACKAGE) + 1 :]
        if "." in name:
            raise ModuleNotFoundError(f"no module named {fullname!r}: the package has no subpackages")
        return _source_spec(fullname, self.package_dir / f"{name}.py")


def _source_spec(
    fullname: str, origin: Path, search_locations: list[str] | None = None
) -> importlib.machinery.ModuleSpec:
    if not origin.is_file():  # never fall back to the path search, which finds .so, .pyc, folders
        raise ModuleNotFoundError(
            f"no module named {fullname!r}: {origin} is not in the archive", name=fullname
        )
    loader = _SourceOnlyLoader(fullname, str(origin))
    spec = importlib.util.spec_from_file_location(
        fullname, origin, loader=loader, submodule_search_locations=search_locations
    )
    if spec is None:
        raise ModuleNotFoundError(f"cannot import {fullname!r} from {origin}", name=fullname)
    return spec


def _import_package_from_source() -> None:
    """Import ``squeezenet_handler`` from ``PACKAGE_DIR``'s sources, and route its modules there."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None:
        where = [Path(entry).resolve() for entry in getattr(loaded, "__path__", ())]
        if where != [PACKAGE_DIR.resolve()]:
            raise ImportError(f"{PACKAGE} is already imported from {where}, not from {PACKAGE_DIR}")
        return  # this same folder's package, imported earlier in this process (the archive tool)
    if not any(getattr(finder, "package_dir", None) == PACKAGE_DIR for finder in sys.meta_path):
        sys.meta_path.insert(0, _PackageSourceFinder(PACKAGE_DIR))
    spec = _source_spec(PACKAGE, PACKAGE_DIR / "__init__.py", [str(PACKAGE_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[PACKAGE]
        raise


_import_package_from_source()

from squeezenet_handler.service import handle  # noqa: E402  (after the package is pinned to its source)

__all__ = ["handle"]
