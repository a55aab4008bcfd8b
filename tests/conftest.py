from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from harness import ROOT, make_model_dir
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
def inprocess(built, tmp_path_factory: pytest.TempPathFactory) -> InProcessService:
    """The built archive's own handler, unpacked and run in this process (batch <= 8): the answers
    every served copy of the archive must give."""
    folder = tmp_path_factory.mktemp("unpacked_built")
    with zipfile.ZipFile(built.archive) as archive:
        archive.extractall(folder)
    return InProcessService(folder, batch_size=8)


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


@pytest.fixture(scope="session")
def mms(tmp_path_factory: pytest.TempPathFactory, built):
    """A real Multi Model Server on free 127.0.0.1 ports with the built archive registered as
    'squeezenet' (batch_size 8, max_batch_delay 50 ms, one worker); always stopped, by our PIDs."""
    from squeezenet_mar.server import ModelServer, Registration

    server = ModelServer.on_free_ports(
        tmp_path_factory.mktemp("mms"),
        built.archive.parent,
        config=ROOT / "config.properties",
    )
    server.start()
    try:
        server.register(Registration(url=built.archive.name, batch_size=8, max_batch_delay_ms=50))
        server.wait_for_workers("squeezenet", 1)
        yield server
    finally:
        server.stop()
        assert not server.processes()


@pytest.fixture(scope="session")
def plain_mms(tmp_path_factory: pytest.TempPathFactory, built):
    """A stock MMS as a user who never saw this repository runs it: a config.properties holding only the
    two addresses, no environment of ours, the archive named on the command line as in
    ``multi-model-server --start --model-store DIR --models squeezenet=squeezenet_v1.1.mar``."""
    from squeezenet_mar.server import ModelServer, free_port, write_properties

    home = tmp_path_factory.mktemp("plain_mms")
    config = home / "config.properties"
    write_properties(
        config,
        {
            "inference_address": f"http://127.0.0.1:{free_port()}",
            "management_address": f"http://127.0.0.1:{free_port()}",
        },
    )
    server = ModelServer(home / "mms", built.archive.parent, config=config, lean_logging=False)
    server.start(models=[f"squeezenet={built.archive.name}"])
    try:
        server.wait_for_workers("squeezenet")  # a stock MMS starts one worker per core
        yield server
    finally:
        server.stop()
        assert not server.processes()


@pytest.fixture(scope="session")
def inprocess_onnxruntime(built, tmp_path_factory: pytest.TempPathFactory):
    """The built archive's handler in this process on ONNX Runtime (SQUEEZENET_ENGINE), as a server
    without MXNet runs it (TorchServe's Python): the answers TorchServe must give."""
    import os

    from squeezenet_mar.inprocess import InProcessService

    folder = tmp_path_factory.mktemp("unpacked_built_onnxruntime")
    with zipfile.ZipFile(built.archive) as archive:
        archive.extractall(folder)
    previous = os.environ.get("SQUEEZENET_ENGINE")
    os.environ["SQUEEZENET_ENGINE"] = "onnxruntime"
    try:
        return InProcessService(folder, batch_size=8)
    finally:
        if previous is None:
            del os.environ["SQUEEZENET_ENGINE"]
        else:
            os.environ["SQUEEZENET_ENGINE"] = previous


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory, built):
    """A stock TorchServe 0.12 (``.venv-torchserve``: no MXNet) as a user runs it: a config holding only
    its addresses (free ports) and ``disable_token_authorization=true``, the archive named on the
    command line (``torchserve --start --model-store DIR --models squeezenet=squeezenet_v1.1.mar``),
    one worker per core; always stopped, by our PIDs."""
    from torchserve import TorchServe, torchserve_missing

    missing = torchserve_missing()
    if missing:
        pytest.skip(missing)
    server = TorchServe(tmp_path_factory.mktemp("torchserve"), built.archive.parent)
    server.start(models=[f"squeezenet={built.archive.name}"])
    try:
        server.wait_for_workers("squeezenet")
        yield server
    finally:
        server.stop()
        assert not server.processes()
