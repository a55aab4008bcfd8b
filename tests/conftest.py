from __future__ import annotations

from pathlib import Path

import pytest
from harness import make_model_dir
from squeezenet_mar.inprocess import InProcessService
from squeezenet_onnx import build_squeezenet11


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SqueezeNet 1.1 with the zoo file's layout and seeded weights (no network here)."""
    return build_squeezenet11(tmp_path_factory.mktemp("model") / "squeezenet1.1.onnx", seed=0)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("unpacked"), onnx_model)


@pytest.fixture(scope="session")
def service(model_dir: Path) -> InProcessService:
    """The handler module loaded from an unpacked archive through its MMS entry point (batch <= 8)."""
    return InProcessService(model_dir, batch_size=8)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path):
    """The archive as ``squeezenet-mar build --model-file`` makes it, in a model store folder."""
    from squeezenet_mar.build import BuildOptions, build_archive

    store = tmp_path_factory.mktemp("model_store")
    return build_archive(
        BuildOptions(
            model_file=onnx_model,
            output=store / "squeezenet_v1.1.mar",
            author="Model Zoo Team",
            email="zoo@example.org",
            progress=False,
        )
    )
