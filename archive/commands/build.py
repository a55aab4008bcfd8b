"""``squeezenet-mar build``: make the .mar from the model zoo's ONNX file (or a local one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import MODEL_NAME, MODEL_VERSION
from ..model_source import ZOO_URL, default_cache_dir
from .aliases import hidden
from .inputs import require_file
from .keys import add_signing_options, signing_key
from .output import print_top


def add_parser(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser(
        "build",
        help="make model_store/squeezenet_v1.1.mar from the zoo's ONNX file",
        description="Download (or take --model-file) the ONNX model, check it, run the handler on a "
        "generated image, and write a reproducible .mar plus its .sha256.",
    )
    source = build.add_mutually_exclusive_group()
    source.add_argument("--model-file", type=Path, help="local squeezenet1.1.onnx (no download)")
    source.add_argument(
        "--model-url",
        *hidden("--url"),
        dest="model_url",
        default=ZOO_URL,
        help="model URL (default: the ONNX model zoo's)",
    )
    build.add_argument("--md5", help="expected MD5 (default: the zoo's <name>-md5.txt beside the model)")
    build.add_argument("--sha256", help="expected SHA-256 of the download")
    build.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="download cache (%(default)s)"
    )
    build.add_argument(
        "--output", type=Path, default=Path("model_store") / f"{MODEL_NAME}.mar", help="(%(default)s)"
    )
    build.add_argument("--model-name", default=MODEL_NAME, help="manifest modelName (%(default)s)")
    build.add_argument("--model-version", default=MODEL_VERSION, help="manifest modelVersion (%(default)s)")
    build.add_argument("--author", help="publisher author in the manifest")
    build.add_argument("--email", help="publisher email in the manifest")
    build.add_argument(
        "--format",
        choices=("both", "onnx", "mxnet"),
        default="both",
        help="both: the ONNX file (ONNX Runtime) and MXNet -symbol.json/-0000.params converted from it "
        "now (MXNet workers start faster); onnx or mxnet: that one alone (default: %(default)s)",
    )
    build.add_argument(
        "--engine",
        choices=("mxnet", "onnxruntime"),
        default="mxnet",
        help="inference engine recorded in the archive (default: %(default)s)",
    )
    build.add_argument("--signature", type=Path, help="signature.json (default: the repository's)")
    build.add_argument("--synset", type=Path, help="synset.txt (default: the repository's)")
    build.add_argument("--no-smoke-test", action="store_true", help="skip running the handler before packing")
    build.add_argument("-q", "--quiet", action="store_true", help="no download progress bar")
    add_signing_options(build)
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..build import BuildOptions, build_archive
    from ..signatures import signer_fingerprint

    inputs = (("model file", args.model_file), ("signature.json", args.signature), ("synset", args.synset))
    for what, path in inputs:
        if path is not None:
            require_file(path, what)
    extra = {k: v for k, v in (("signature", args.signature), ("synset", args.synset)) if v is not None}
    result = build_archive(
        BuildOptions(
            model_file=args.model_file,
            url=args.model_url,
            md5=args.md5,
            sha256=args.sha256,
            cache_dir=args.cache_dir,
            output=args.output,
            model_name=args.model_name,
            model_version=args.model_version,
            author=args.author,
            email=args.email,
            format=args.format,
            engine=args.engine,
            smoke_test=not args.no_smoke_test,
            progress=not args.quiet,
            signing_key=signing_key(args),
            **extra,
        )
    )
    print(f"archive   {result.archive}")
    print(f"sha256    {result.sha256}  ({result.sha256_file.name})")
    print(f"format    {args.format}, engine {args.engine}")
    if result.manifest.get("test_only"):
        print(f"TEST-ONLY {result.manifest['test_only']}: the manifest and a published card say so")
    if result.bundle_file is not None:
        print(f"signed    key sha256:{signer_fingerprint(signing_key(args))}  ({result.bundle_file.name})")
    for name, digest in result.files.items():
        print(f"  {digest[:16]}…  {name}")
    if result.smoke_top5:
        print("smoke test (generated image, through the archive's own handler):")
        print_top(result.smoke_top5)
    return 0
