"""Build the ``.mar``: check the ONNX model and the archive's inputs, stage the files, run the real
handler on a generated image, then write a reproducible zip in model-archiver's layout.

The user's files are only read. Everything written goes to a temporary staging folder, then to the
output path through a rename, so a failed build leaves no half-written archive behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import HANDLER, HANDLER_MODULE, HANDLER_PACKAGE, MODEL_NAME, MODEL_VERSION
from .errors import ModelCheckError
from .inprocess import InProcessService, smoke_image
from .layout import (
    MANIFEST,
    SHA256SUMS,
    SIGNATURE_BUNDLE,
    manifest_bytes,
    read_archive,
    sha256_hex,
    sha256sums,
    unpacked,
    write_zip,
)
from .model_source import ZOO_URL, default_cache_dir, fetch_model, file_digests
from .signatures import BUNDLE_SUFFIX, SigningKey, sign, signer_fingerprint

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
ONNX_NAME = "squeezenet1.1.onnx"
# The handler's own dependencies, packed beside it for servers that install them per model (TorchServe's
# install_py_dep_per_model, which reads the manifest's model.requirementsFile): see the file itself.
REQUIREMENTS = "requirements.txt"
MXNET_PREFIX = "squeezenet1.1"
# "both" (the default): the ONNX file (ONNX Runtime, TorchServe, KServe) and the MXNet checkpoint
# converted from it at build time (MXNet: a worker skips `import onnx`, the ONNX import and the graph
# rewrite, ~0.4 s of every start); "onnx" or "mxnet": that file alone.
FORMATS = ("both", "onnx", "mxnet")
ENGINES = ("mxnet", "onnxruntime")
DESCRIPTION = (
    "SqueezeNet 1.1 (ONNX model zoo), ImageNet 1000 classes; the zoo reports top-1 56.34%, top-5 79.12% "
    "on ILSVRC2012 val for its weights"
)
# An ONNX file that says it is a stand-in (the tests' seeded model does) is never described as the zoo's.
TEST_ONLY_KEY = "squeezenet_mar.test_only"
TEST_ONLY_DESCRIPTION = (
    "TEST-ONLY: random weights in SqueezeNet 1.1's layout, not the trained model; its classes mean nothing"
)


def _handler_file() -> Path:
    import squeezenet_service

    return Path(squeezenet_service.__file__)


def handler_files(entry: Path) -> dict[str, Path]:
    """Archive name -> source file of the handler: the entry module and every module of the package
    beside it (sorted; bytecode never)."""
    package = entry.parent / HANDLER_PACKAGE
    files = {f"{HANDLER_MODULE}.py": entry}
    files.update({f"{HANDLER_PACKAGE}/{path.name}": path for path in sorted(package.glob("*.py"))})
    return files


@dataclass(frozen=True)
class BuildOptions:
    model_file: Path | None = None  # a local ONNX file; None downloads ``url``
    url: str = ZOO_URL
    md5: str | None = None
    sha256: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    output: Path = Path("model_store") / f"{MODEL_NAME}.mar"
    model_name: str = MODEL_NAME
    model_version: str = MODEL_VERSION
    description: str = DESCRIPTION
    author: str | None = None
    email: str | None = None
    signature: Path = REPO_ROOT / "signature.json"
    synset: Path = REPO_ROOT / "synset.txt"
    handler: Path = field(default_factory=_handler_file)
    format: str = "both"  # see FORMATS
    engine: str = "mxnet"  # "onnxruntime" needs format "onnx"
    smoke_test: bool = True
    progress: bool = True
    signing_key: SigningKey | None = None  # sign the archive (MAR-INF/model.sig, and <output>.sig)


@dataclass(frozen=True)
class BuildResult:
    archive: Path
    sha256: str
    sha256_file: Path
    manifest: dict[str, Any]
    files: dict[str, str]  # name -> sha256 of every file in the archive
    smoke_top5: list[dict[str, Any]]
    bundle_file: Path | None = None  # <archive>.sig when signed


@dataclass(frozen=True)
class OnnxInfo:
    input_name: str
    input_shape: list[int | str]
    num_classes: int
    opset: int
    test_only: str | None = None  # why the file says it is not a trained model (its metadata)


def check_onnx(path: Path, num_labels: int) -> OnnxInfo:
    """``onnx.checker``, one float data input of 1x3x224x224, ``num_labels`` scores out."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises protobuf DecodeError, ValidationError, OSError, ...
        raise ModelCheckError(f"{path.name}: not a valid ONNX model: {type(exc).__name__}: {exc}") from exc
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    data_inputs = [i for i in graph.input if i.name not in weights]
    if len(data_inputs) != 1:
        raise ModelCheckError(f"{path.name}: expected one data input, found {[i.name for i in data_inputs]}")
    data = data_inputs[0]
    tensor = data.type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise ModelCheckError(f"{path.name}: input {data.name!r} is not float32")
    dims = tensor.shape.dim
    shape: list[int | str] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    if len(shape) != 4 or shape[1:] != [3, 224, 224] or shape[0] not in (1, "N", "batch", "batch_size", ""):
        raise ModelCheckError(f"{path.name}: input {data.name!r} has shape {shape}, expected 1x3x224x224")
    if len(graph.output) != 1:
        raise ModelCheckError(f"{path.name}: expected one output, found {len(graph.output)}")
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if not out_dims or out_dims[-1] != num_labels:
        raise ModelCheckError(
            f"{path.name}: output {graph.output[0].name!r} has shape {out_dims}, "
            f"but synset.txt has {num_labels} labels"
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxInfo(data.name, shape, out_dims[-1], opset, test_only_reason(model))


def test_only_reason(model: Any) -> str | None:
    """What an ONNX file says of itself when it is a stand-in: its ``squeezenet_mar.test_only``
    metadata, or a producer name containing TEST-ONLY; None for any other file."""
    for prop in model.metadata_props:
        if prop.key == TEST_ONLY_KEY:
            return prop.value or "marked test-only"
    return model.producer_name if "TEST-ONLY" in model.producer_name else None


def count_labels(path: Path) -> int:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelCheckError(f"{path.name}: cannot read labels: {exc}") from exc
    return sum(1 for line in lines if line.strip())


def archive_signature(path: Path, info: OnnxInfo, engine: str, model_files: dict[str, str]) -> dict[str, Any]:
    """The repository's signature.json with the chosen engine and its model file recorded in it: the
    one file as ``model_file``, or, when the archive ships one per engine, ``model_files`` (engine ->
    file; each engine runs its own)."""
    try:
        signature = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelCheckError(f"{path.name}: {exc}") from exc
    declared = signature.get("inputs", [{}])[0]
    if declared.get("data_name") != info.input_name:
        raise ModelCheckError(
            f"{path.name}: input data_name {declared.get('data_name')!r} "
            f"is not the model's input {info.input_name!r}"
        )
    outputs = signature.get("outputs", [{}])
    if not outputs or outputs[0].get("data_shape", [None])[-1] != info.num_classes:
        raise ModelCheckError(f"{path.name}: outputs data_shape must end in {info.num_classes}")
    if len(set(model_files.values())) == 1:
        signature["engine"] = {"name": engine, "model_file": next(iter(model_files.values()))}
    else:
        signature["engine"] = {"name": engine, "model_files": dict(sorted(model_files.items()))}
    return signature


def convert_to_mxnet(onnx_path: Path, prefix: Path) -> list[Path]:
    """ONNX -> MXNet checkpoint (``prefix-symbol.json``, ``prefix-0000.params``), so that workers start
    without importing ONNX. Uses the handler's own loader, the one the worker would have used."""
    import mxnet as mx

    from squeezenet_handler.engines import load_mxnet_params

    sym, arg_params, aux_params = load_mxnet_params("onnx", onnx_path, threads=os.cpu_count() or 1)
    mx.model.save_checkpoint(str(prefix), 0, sym, arg_params, aux_params, remove_amp_cast=False)
    return [Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")]


def build_manifest(
    options: BuildOptions, source: dict[str, Any], test_only: str | None = None
) -> dict[str, Any]:
    """model-archiver's MANIFEST.json fields, plus where the model came from. A model that says it is a
    test stand-in is described as one (and marked ``test_only``), whatever ``options.description``."""
    description = TEST_ONLY_DESCRIPTION if test_only else options.description
    manifest: dict[str, Any] = {
        "runtime": "python",
        "model": {
            "modelName": options.model_name,
            "modelVersion": options.model_version,
            "handler": HANDLER,
            "description": description,
            "requirementsFile": REQUIREMENTS,
        },
        "modelServerVersion": "1.0",
        "implementationVersion": "1.0",
        "specificationVersion": "1.0",
        "description": description,
        "source": source,
    }
    if test_only:
        manifest["test_only"] = test_only
    if options.engine == "mxnet":
        manifest["engine"] = {"engineName": "MXNet", "engineVersion": "1.9.1"}
    if options.author or options.email:
        manifest["publisher"] = {"author": options.author or "", "email": options.email or ""}
    return manifest


def _check_options(options: BuildOptions) -> None:
    if options.format not in FORMATS:
        raise ModelCheckError(f"--format must be one of {FORMATS}, got {options.format!r}")
    if options.engine not in ENGINES:
        raise ModelCheckError(f"--engine must be one of {ENGINES}, got {options.engine!r}")
    if options.engine == "onnxruntime" and options.format == "mxnet":
        raise ModelCheckError("--engine onnxruntime runs the ONNX file: use it with --format both or onnx")
    inputs = {"signature": options.signature, "synset": options.synset, "handler": options.handler}
    for what, path in inputs.items():
        if not path.is_file():
            raise ModelCheckError(f"{path}: {what} file not found")
    if not (options.handler.parent / REQUIREMENTS).is_file():
        raise ModelCheckError(
            f"{options.handler.parent / REQUIREMENTS}: the handler's {REQUIREMENTS} is missing"
        )
    package = options.handler.parent / HANDLER_PACKAGE
    if not (package / "__init__.py").is_file():
        raise ModelCheckError(
            f"{package}: the handler's package {HANDLER_PACKAGE} is not beside {options.handler.name}"
        )
    if options.model_file is not None and not options.model_file.is_file():
        raise ModelCheckError(f"{options.model_file}: model file not found")


def stage_files(options: BuildOptions, onnx_path: Path, info: OnnxInfo, staging: Path) -> None:
    """Write every file of the archive but MAR-INF/ into ``staging``."""
    checkpoint = f"{MXNET_PREFIX}-symbol.json"
    model_files = {}
    if options.format in ("both", "mxnet"):
        convert_to_mxnet(onnx_path, staging / MXNET_PREFIX)
        model_files["mxnet"] = checkpoint
    if options.format in ("both", "onnx"):
        shutil.copyfile(onnx_path, staging / ONNX_NAME)
        model_files["onnxruntime"] = ONNX_NAME
        model_files.setdefault("mxnet", ONNX_NAME)
    signature = archive_signature(options.signature, info, options.engine, model_files)
    (staging / "signature.json").write_text(json.dumps(signature, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(options.synset, staging / "synset.txt")
    shutil.copyfile(options.handler.parent / REQUIREMENTS, staging / REQUIREMENTS)
    for name, source in handler_files(options.handler).items():
        (staging / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(source, staging / name)


def smoke_test(staging: Path) -> list[dict[str, Any]]:
    """Load the staged archive with its own handler and MMS's Context; answer a generated image."""
    try:
        service = InProcessService(staging, HANDLER)
        [answer] = service.predict_bytes([smoke_image()])
    except Exception as exc:  # whatever the handler raises at load is a failed build
        raise ModelCheckError(f"smoke test: the handler failed to load the model: {exc}") from exc
    if answer.status != 200 or not isinstance(answer.body, list) or len(answer.body) != 5:
        raise ModelCheckError(f"smoke test: expected a top-5 prediction, got {answer.status}: {answer.body}")
    return answer.body


def build_archive(options: BuildOptions) -> BuildResult:
    _check_options(options)
    if options.model_file is not None:
        onnx_path, url = options.model_file, None
    else:
        onnx_path = fetch_model(
            options.url, options.cache_dir, md5=options.md5, sha256=options.sha256, progress=options.progress
        )
        url = options.url
    info = check_onnx(onnx_path, count_labels(options.synset))
    source = {"file": onnx_path.name, "url": url, "opset": info.opset, **file_digests(onnx_path)}
    with tempfile.TemporaryDirectory(prefix="squeezenet-mar-") as tmp:
        staging = Path(tmp)
        stage_files(options, onnx_path, info, staging)
        files = {
            p.relative_to(staging).as_posix(): p.read_bytes()
            for p in sorted(staging.rglob("*"))
            if p.is_file()
        }
        if info.test_only:
            logger.warning(
                "%s is a TEST-ONLY model (%s): the archive says so", onnx_path.name, info.test_only
            )
        files[MANIFEST] = manifest_bytes(build_manifest(options, source, info.test_only))
        files[SHA256SUMS] = sha256sums(files)
        if options.signing_key is not None:
            files[SIGNATURE_BUNDLE] = sign(files, options.signing_key)
        (staging / "MAR-INF").mkdir()
        for name in (MANIFEST, SHA256SUMS, SIGNATURE_BUNDLE):  # the smoke test sees what MMS unpacks
            if name in files:
                (staging / name).write_bytes(files[name])
        top5 = smoke_test(staging) if options.smoke_test else []
    digest, sha_file, bundle_file = write_archive(options.output, files)
    return BuildResult(
        archive=options.output,
        sha256=digest,
        sha256_file=sha_file,
        manifest=json.loads(files[MANIFEST]),
        files={name: sha256_hex(data) for name, data in sorted(files.items())},
        smoke_top5=top5,
        bundle_file=bundle_file,
    )


def write_archive(output: Path, files: dict[str, bytes]) -> tuple[str, Path, Path | None]:
    """The reproducible zip at ``output`` (through a rename: never half written), its ``.sha256`` and,
    for a signed archive, the bundle's copy ``.sig`` beside it. (SHA-256, .sha256 file, .sig file)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    write_zip(partial, files)
    os.replace(partial, output)
    digest = sha256_hex(output.read_bytes())
    sha_file = output.with_name(output.name + ".sha256")
    sha_file.write_text(f"{digest}  {output.name}\n")
    bundle_file = output.with_name(output.name + BUNDLE_SUFFIX)
    if SIGNATURE_BUNDLE in files:
        bundle_file.write_bytes(files[SIGNATURE_BUNDLE])
    else:
        bundle_file.unlink(missing_ok=True)  # a stale signature of an earlier build would not verify
    logger.debug("wrote %s (%d bytes, sha256 %s)", output, output.stat().st_size, digest)
    return digest, sha_file, bundle_file if SIGNATURE_BUNDLE in files else None


@dataclass(frozen=True)
class SignResult:
    archive: Path
    sha256: str
    bundle_file: Path
    fingerprint: str  # of the key that signed (certificate mode: the leaf certificate's key)


def sign_archive(archive: Path, key: SigningKey, output: Path | None = None) -> SignResult:
    """Sign an existing archive: verified first (nothing of it runs), then rewritten with the bundle
    to ``output`` (default: replace ``archive``, through a rename). A previous signature is replaced."""
    from .verify import verify_archive

    verify_archive(archive)
    contents = read_archive(archive)
    with unpacked(contents, "squeezenet-sign-") as root:
        files = {
            name: (root / name).read_bytes() for name in sorted(contents.entries) if name != SIGNATURE_BUNDLE
        }
    files[SIGNATURE_BUNDLE] = sign(files, key)
    target = output or archive
    digest, _, bundle_file = write_archive(target, files)
    return SignResult(target, digest, bundle_file or target, signer_fingerprint(key))
