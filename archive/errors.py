"""Errors of the archive tool. Each carries the exit code the command line turns it into; library
functions raise them and never print or exit.

    ArchiveToolError        1
    +-- UsageError          2  a missing or unreadable input file, an option out of range
    +-- DownloadError       3  network, HTTP status, checksum; the message says how to pass a local file
    +-- ModelCheckError     4  the ONNX model or the archive's inputs fail validation or the smoke test
    +-- VerifyError         5  an archive failed verification (``problems`` lists file and problem)
    +-- PublishError        6  the zoo refuses the archive (e.g. the version exists and no --force)
    +-- ClientError         7  the model server answered with an error or could not be reached
    +-- SignatureVerifyError 9 the archive's signature does not verify against the trusted key:
                               unsigned, another signer, or a file changed, added or removed since
"""

from __future__ import annotations


class ArchiveToolError(Exception):
    exit_code = 1


class UsageError(ArchiveToolError):
    exit_code = 2


class DownloadError(ArchiveToolError):
    exit_code = 3


class ModelCheckError(ArchiveToolError):
    exit_code = 4


class VerifyError(ArchiveToolError):
    exit_code = 5

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{name}: {problem}" for name, problem in problems))


class PublishError(ArchiveToolError):
    exit_code = 6


class ClientError(ArchiveToolError):
    exit_code = 7


class SignatureVerifyError(ArchiveToolError):
    exit_code = 9

    def __init__(self, message: str, reason: str = "", files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason  # squeezenet_handler.signing.SignatureError's reason
        self.files = files
