"""``squeezenet-mar sagemaker``: SageMaker's model.tar.gz from a built archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from .inputs import require_file
from .keys import add_trust_options, trust


def add_parser(sub: argparse._SubParsersAction) -> None:
    sagemaker = sub.add_parser(
        "sagemaker",
        help="write SageMaker's model.tar.gz (unpacked into /opt/ml/model) from a built .mar",
        description="Verifies the archive (nothing of it runs; with --trusted-key its signature too), then "
        "writes a deterministic model.tar.gz holding the .mar and its .sha256. Upload it to S3 and name "
        "it as the SageMaker model's ModelDataUrl; the image's entrypoint serves it as 'squeezenet'.",
    )
    sagemaker.add_argument(
        "archive", type=Path, metavar="ARCHIVE", help="the .mar, e.g. model_store/squeezenet_v1.1.mar"
    )
    sagemaker.add_argument("--output", type=Path, default=Path("model.tar.gz"), help="(%(default)s)")
    add_trust_options(sagemaker)
    sagemaker.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..layout import sha256_file
    from ..sagemaker import model_tar_entries, write_model_tar

    output = write_model_tar(require_file(args.archive, "archive"), args.output, trust=trust(args))
    print(f"model.tar.gz  {output}  ({output.stat().st_size} bytes, sha256 {sha256_file(output)})")
    for name in model_tar_entries(args.archive):
        print(f"  /opt/ml/model/{name}")
    print("upload it to S3 and name it as the SageMaker model's ModelDataUrl")
    return 0
