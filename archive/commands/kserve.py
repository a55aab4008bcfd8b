"""``squeezenet-mar kserve``: the storageUri folder and InferenceService for KServe's TorchServe runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

from .inputs import require_file
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    kserve = sub.add_parser(
        "kserve",
        help="write the storageUri folder and InferenceService for KServe's TorchServe runtime",
        description="Verifies the archive (nothing of it runs; with --trusted-key its signature too), then "
        "writes DIR/config/config.properties, DIR/model-store/ARCHIVE and DIR/inferenceservice.yaml. Upload "
        "DIR where --storage-uri says and apply the InferenceService; v1 requests are "
        '{"instances": [{"data": "<base64 image>"}]}. With a trusted key, the key travels in DIR/config '
        "and the handler checks the signature at load; the runtime's image then needs onnxruntime.",
    )
    kserve.add_argument(
        "archive", type=Path, metavar="ARCHIVE", help="the .mar, e.g. model_store/squeezenet_v1.1.mar"
    )
    kserve.add_argument("--output", type=Path, required=True, metavar="DIR", help="a new (or empty) folder")
    kserve.add_argument(
        "--storage-uri",
        default="pvc://squeezenet-models/squeezenet",
        help="where DIR will be uploaded: s3://..., gs://..., pvc://CLAIM/PATH (%(default)s)",
    )
    kserve.add_argument(
        "--protocol", choices=("v1", "v2"), default="v1", help="KServe protocol (%(default)s)"
    )
    kserve.add_argument("--name", default="squeezenet", help="the InferenceService's name (%(default)s)")
    kserve.add_argument("--model", default="squeezenet", help="the model's name in URLs (%(default)s)")
    kserve.add_argument(
        "--workers", type=int, default=1, help="TorchServe workers, one per CPU (%(default)s)"
    )
    kserve.add_argument("--cpu", default="1", help="CPU request and limit of the predictor (%(default)s)")
    kserve.add_argument("--memory", default="1Gi", help="memory request and limit (%(default)s)")
    add_trust_options(kserve)
    kserve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..kserve import KServeOptions, write_kserve_layout

    options = KServeOptions(
        model_name=args.model,
        service_name=args.name,
        storage_uri=args.storage_uri,
        protocol=args.protocol,
        workers=args.workers,
        cpu=args.cpu,
        memory=args.memory,
    )
    layout = write_kserve_layout(require_file(args.archive, "archive"), args.output, options, trust(args))
    print(f"kserve    {layout.folder}")
    for path in (layout.config, *layout.trusted_files, layout.archive, layout.inference_service):
        print(f"  {path.relative_to(layout.folder)}")
    if layout.install_dependencies:
        print("TorchServe installs the archive's requirements.txt (onnxruntime) per model at load")
    else:
        print("signature checked at load: the runtime's image must have onnxruntime (no per-model install)")
    print(f"upload {layout.folder} to {args.storage_uri}, then: kubectl apply -f {layout.inference_service}")
    return 0
