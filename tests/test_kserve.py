"""``squeezenet-mar kserve`` (issue 22): the storageUri folder for KServe's TorchServe runtime and its
InferenceService, validated offline against KServe's CRD schema (tests/data, source in the .md beside
it); then TorchServe run exactly as the runtime runs it, from that folder, answering KServe's v1 and
v2 shapes on the endpoints the runtime's wrapper calls, whatever envelope the runtime asks for."""

from __future__ import annotations

import base64
import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

import images
from harness import ROOT
from keys import make_key
from squeezenet_mar.cli import main
from squeezenet_mar.server import read_properties
from test_serving import same_prediction

SCHEMA = ROOT / "tests" / "data" / "kserve-inferenceservice-v1beta1.schema.json.gz"
PHOTO = images.jpeg(500, 375, 0)


def crd_schema() -> dict[str, Any]:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare, as the API server's strict field validation reports them
    (a CRD prunes them silently otherwise)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
            elif "additionalProperties" not in schema:
                found.append(f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for number, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{number}]")
    return found


def validate(document: dict[str, Any]) -> list[str]:
    schema = crd_schema()
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    return errors + [f"{field}: unknown field" for field in unknown_fields(document, schema)]


def run_cli(*args: str) -> int:
    return main(["kserve", *args])


@pytest.fixture(scope="module")
def layout(built, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kserve") / "squeezenet"
    assert (
        run_cli(str(built.archive), "--output", str(folder), "--storage-uri", "s3://models/squeezenet") == 0
    )
    return folder


def test_the_folder_is_kserves_torchserve_layout(layout, built, capsys):
    files = sorted(p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file())
    assert files == ["config/config.properties", "inferenceservice.yaml", "model-store/squeezenet_v1.1.mar"]
    assert (layout / "model-store/squeezenet_v1.1.mar").read_bytes() == built.archive.read_bytes()


def test_the_config_is_the_runtimes_without_an_envelope(layout):
    props = read_properties(layout / "config/config.properties")
    assert props["inference_address"] == "http://127.0.0.1:8085"
    assert props["management_address"].startswith("http://127.0.0.1:")  # never outside the pod
    assert props["metrics_address"] == "http://0.0.0.0:8082"  # the runtime's prometheus annotation
    assert props["disable_token_authorization"] == "true"  # the wrapper sends no token
    assert props["install_py_dep_per_model"] == "true"  # the runtime's image has no onnxruntime
    assert "enable_envvars_config" not in props and "service_envelope" not in props
    assert props["model_store"] == "/mnt/models/model-store"
    snapshot = json.loads(props["model_snapshot"])
    [(name, versions)] = snapshot["models"].items()
    assert name == "squeezenet" and versions["1.1"]["marName"] == "squeezenet_v1.1.mar"
    with zipfile.ZipFile(layout / "model-store/squeezenet_v1.1.mar") as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["requirementsFile"] == "requirements.txt"
        assert archive.read("requirements.txt").decode().splitlines()[-1] == "onnxruntime>=1.17,<2"


def test_the_inference_service_validates_against_kserves_crd(layout):
    document = yaml.safe_load((layout / "inferenceservice.yaml").read_text())
    assert validate(document) == []
    model = document["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "pytorch"} and model["runtime"] == "kserve-torchserve"
    assert model["storageUri"] == "s3://models/squeezenet" and model["protocolVersion"] == "v1"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.update(storageUri=7), "storageUri: 7 is not of type 'string'"),
        (lambda m: m.update(modelFormat={}), "'name' is a required property"),
        (lambda m: m.update(protocol="v1"), "protocol: unknown field"),
    ],
)
def test_the_validation_catches_what_the_api_server_refuses(layout, change, problem):
    document = yaml.safe_load((layout / "inferenceservice.yaml").read_text())
    change(document["spec"]["predictor"]["model"])
    assert any(problem in line for line in validate(document)), validate(document)


def test_a_trusted_key_travels_in_the_folder_and_turns_per_model_installs_off(built, tmp_path, capsys):
    key = make_key(tmp_path / "keys", "publisher")
    signed = tmp_path / "signed.mar"
    signed.write_bytes(built.archive.read_bytes())
    assert main(["sign", str(signed), "--signing-key", str(key.private)]) == 0
    capsys.readouterr()
    folder = tmp_path / "out"
    assert (
        run_cli(str(signed), "--output", str(folder), "--trusted-key", str(key.public), "--protocol", "v2")
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [
        f"kserve    {folder}",
        "  config/config.properties",
        "  config/trusted-key.pem",
        "  model-store/signed.mar",
        "  inferenceservice.yaml",
    ]
    assert (
        out[5]
        == "signature checked at load: the runtime's image must have onnxruntime (no per-model install)"
    )
    assert (folder / "config/trusted-key.pem").read_bytes() == key.public.read_bytes()
    assert read_properties(folder / "config/config.properties")["install_py_dep_per_model"] == "false"
    document = yaml.safe_load((folder / "inferenceservice.yaml").read_text())
    assert validate(document) == []
    model = document["spec"]["predictor"]["model"]
    assert model["env"] == [{"name": "SQUEEZENET_TRUSTED_KEY", "value": "/mnt/models/config/trusted-key.pem"}]
    assert model["protocolVersion"] == "v2"


def test_an_archive_that_fails_verification_writes_nothing(built, tmp_path, capsys):
    key = make_key(tmp_path / "keys", "someone")
    folder = tmp_path / "out"
    assert run_cli(str(built.archive), "--output", str(folder), "--trusted-key", str(key.public)) == 9
    assert "unsigned" in capsys.readouterr().err
    broken = tmp_path / "broken.mar"
    data = bytearray(built.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    assert run_cli(str(broken), "--output", str(folder)) == 5
    assert not folder.exists() and list(tmp_path.glob(".kserve-*")) == []


def test_a_folder_that_is_not_empty_is_refused(built, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert run_cli(str(built.archive), "--output", str(tmp_path / "out")) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


# -------------------------------------------------------------- TorchServe as the runtime runs it
@pytest.fixture(scope="module")
def runtime(layout, tmp_path_factory):
    """``torchserve --start --model-store=DIR/model-store --ts-config=DIR/config/config.properties``
    with the runtime's ``TS_SERVICE_ENVELOPE``; only the addresses (free ports here), the model store's
    path and the per-model install (no network in the tests; onnxruntime is installed) changed."""
    from torchserve import TorchServe, minimal_properties, torchserve_missing

    missing = torchserve_missing()
    if missing:
        pytest.skip(missing)
    props = read_properties(layout / "config/config.properties")
    free = minimal_properties()
    for key in ("inference_address", "management_address", "metrics_address"):
        props[key] = free[key]
    props.update(
        grpc_inference_port=free["grpc_inference_port"],
        grpc_management_port=free["grpc_management_port"],
        model_store=str(layout / "model-store"),
        install_py_dep_per_model="false",
    )
    server = TorchServe(
        tmp_path_factory.mktemp("kserve_runtime"),
        layout / "model-store",
        props,
        env={"TS_SERVICE_ENVELOPE": "kservev2"},
    )
    server.start()
    try:
        server.wait_for_workers("squeezenet", 1)
        yield server
    finally:
        server.stop()
        assert not server.processes()


@pytest.mark.integration
def test_the_runtime_answers_v1_and_v2_as_the_wrapper_forwards_them(runtime, inprocess_onnxruntime):
    """The wrapper (kserve 0.13's Model._http_predict) POSTs the client's JSON with Content-Type
    application/json to /v1/models/NAME:predict or /v2/models/NAME/infer; the envelope the runtime names
    is not used, so both protocols' shapes are answered, by the handler, per request."""
    data = base64.b64encode(PHOTO).decode()
    headers = {"Content-Type": "application/json"}
    [expected] = inprocess_onnxruntime.predict_bytes([PHOTO])
    v1 = requests.post(
        f"{runtime.inference_url}/v1/models/squeezenet:predict",
        data=json.dumps({"instances": [{"data": data}]}),
        headers=headers,
        timeout=60,
    )
    assert v1.status_code == 200, v1.text
    [prediction] = v1.json()["predictions"]
    assert same_prediction(prediction, expected.body)
    v2 = requests.post(
        f"{runtime.inference_url}/v2/models/squeezenet/infer",
        data=json.dumps({"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "data": [data]}]}),
        headers=headers,
        timeout=60,
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [item["class"] for item in expected.body]
    bad = requests.post(
        f"{runtime.inference_url}/v1/models/squeezenet:predict",
        data=json.dumps({"instances": [{"data": "not base64!"}]}),
        headers=headers,
        timeout=60,
    )
    assert bad.status_code == 400 and bad.json()["error"].startswith("instances[0].data: not standard base64")
