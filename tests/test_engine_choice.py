"""Which engine a worker runs (issue 22): SQUEEZENET_ENGINE when set, else signature.json's engine when
this Python can import it, else the other one that runs the model file; one log line says which and
why, and a Python with neither refuses to load in one line naming what to install.

A Python without a package is made for real: ``sys.modules[name] = None`` makes every ``import name``
in this process fail as it does where the package is not installed (TorchServe's virtualenv has no
MXNet: tests/test_torchserve.py runs the archive there)."""

from __future__ import annotations

import logging
import sys

import pytest

from squeezenet_handler.engines import choose_engine, load_engine
from squeezenet_handler.errors import ModelLoadError
from squeezenet_handler.signature import read_signature


@pytest.fixture
def signature(model_dir):
    return read_signature(model_dir / "signature.json")


def without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_signature_engine_when_it_is_importable(model_dir, signature, caplog):
    assert signature.engine == "mxnet"
    with caplog.at_level(logging.INFO, logger="squeezenet_handler.engines"):
        assert choose_engine(signature, model_dir, 1, env={}) == "mxnet"
    assert [r.getMessage() for r in caplog.records] == [
        "squeezenet: engine mxnet, the one signature.json prefers"
    ]


def test_onnxruntime_when_mxnet_is_missing_with_one_line_saying_why(
    model_dir, signature, monkeypatch, caplog
):
    without(monkeypatch, "mxnet")
    with caplog.at_level(logging.INFO, logger="squeezenet_handler.engines"):
        chosen = choose_engine(signature, model_dir, 1, env={})
    assert chosen == "onnxruntime"
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("squeezenet: engine onnxruntime, because signature.json prefers mxnet, which this")
    assert "cannot import" in line and sys.executable in line
    engine = load_engine(chosen, model_dir, signature, 1)
    assert engine.name == "onnxruntime"


def test_neither_engine_refuses_to_load_naming_what_to_install(model_dir, signature, monkeypatch):
    without(monkeypatch, "mxnet", "onnxruntime")
    with pytest.raises(ModelLoadError) as refused:
        choose_engine(signature, model_dir, 1, env={})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("no inference engine for squeezenet1.1.onnx in this Python")
    assert "pip install onnxruntime or pip install mxnet==1.9.1" in message


def test_the_operators_choice_is_taken_as_it_is_or_refused(model_dir, signature, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="squeezenet_handler.engines"):
        assert (
            choose_engine(signature, model_dir, 1, env={"SQUEEZENET_ENGINE": "onnxruntime"}) == "onnxruntime"
        )
    assert (
        caplog.records[-1].getMessage()
        == "squeezenet: engine onnxruntime, as SQUEEZENET_ENGINE=onnxruntime asks"
    )
    with pytest.raises(ModelLoadError, match="SQUEEZENET_ENGINE='tensorrt': unknown engine"):
        choose_engine(signature, model_dir, 1, env={"SQUEEZENET_ENGINE": "tensorrt"})
    without(monkeypatch, "onnxruntime")
    with pytest.raises(
        ModelLoadError, match="SQUEEZENET_ENGINE=onnxruntime, but this Python .* pip install onnxruntime"
    ):
        choose_engine(signature, model_dir, 1, env={"SQUEEZENET_ENGINE": "onnxruntime"})


def test_an_mxnet_checkpoint_needs_mxnet(tmp_path, model_dir, signature, monkeypatch):
    """``build --format mxnet`` archives hold no .onnx file: ONNX Runtime cannot stand in."""
    import dataclasses
    import shutil

    folder = tmp_path / "checkpoint"
    shutil.copytree(model_dir, folder)
    (folder / "squeezenet1.1.onnx").unlink()
    (folder / "squeezenet1.1-symbol.json").write_text("{}")
    (folder / "squeezenet1.1-0000.params").write_bytes(b"")
    checkpoint = dataclasses.replace(signature, model_file="squeezenet1.1-symbol.json")
    without(monkeypatch, "mxnet")
    with pytest.raises(
        ModelLoadError, match=r"for squeezenet1.1-symbol.json .*: pip install mxnet==1.9.1 \("
    ):
        choose_engine(checkpoint, folder, 1, env={})
    with pytest.raises(ModelLoadError, match="an MXNet checkpoint, which only mxnet runs"):
        choose_engine(checkpoint, folder, 1, env={"SQUEEZENET_ENGINE": "onnxruntime"})
