"""Another local user against a plain MMS through a shared temporary folder (issue 20, items 6 and 7).

- MMS 1.1.11 unpacks an archive into ``<tmp>/models/<sha1>/`` and reuses that folder when it exists:
  a folder another user made there first (the genuine files, relabelled classes) is refused at load.
- The workers share the cores through lock files in ``<tmp>/squeezenet-cores-<uid>/``: a folder
  another user made first (holding every lock, or with lock files that are symbolic links) is not
  used, and the workers run on fixed threads; a lock held too long never stops a request.

The other user is uid 65534 (``os.chown``, so these tests need root and skip without it; the
permission and symbolic-link cases run as anyone). The stock MMS at the end is started once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import images
from squeezenet_handler.cores import CoreTokens, shared_cores
from squeezenet_handler.errors import ModelLoadError
from squeezenet_handler.trust import check_folder_ownership, group_of_this_user_alone
from squeezenet_mar.inprocess import InProcessService
from squeezenet_mar.layout import SHA256SUMS, sha256sums, write_zip
from squeezenet_mar.server import ModelServer, Registration, free_port, write_properties

OTHER_UID = 65534  # nobody
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user (chown) needs root")
PHOTO = images.jpeg(500, 375, 11)


def unpack(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder)
    return folder


def give_to_other_user(path: Path) -> None:
    os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for inside in path.rglob("*"):
            os.chown(inside, OTHER_UID, OTHER_UID, follow_symlinks=False)


def relabel(folder: Path) -> None:
    """What the other user gains: every class renamed, SHA256SUMS made consistent again."""
    synset = folder / "synset.txt"
    synset.write_text("".join(f"n{i:08d} attacker label {i}\n" for i in range(1000)))
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    del files[SHA256SUMS]
    (folder / SHA256SUMS).write_bytes(
        sha256sums({k: v for k, v in files.items() if k != "MAR-INF/model.sig"})
    )


# ------------------------------------------------------------------------- item 6: the model folder
@pytest.fixture
def model_folder(built, tmp_path: Path) -> Path:
    """The built archive unpacked as MMS does, in a folder of its own (the ``models`` folder)."""
    (tmp_path / "models").mkdir()
    return unpack(built.archive, tmp_path / "models" / "b505132cdb2f28d10f54afc9a59bff6b68b71d39")


def test_a_folder_of_our_own_passes(model_folder: Path) -> None:
    assert check_folder_ownership(model_folder) == len(list(model_folder.rglob("*"))) + 1


@AS_ROOT
@pytest.mark.parametrize("what", [".", "synset.txt", "squeezenet_handler", "squeezenet_handler/service.py"])
def test_anything_another_user_owns_is_refused(model_folder: Path, what: str) -> None:
    give_to_other_user(model_folder / what)
    with pytest.raises(ModelLoadError, match=f"belongs to uid {OTHER_UID}, not to this process's user"):
        check_folder_ownership(model_folder)


@AS_ROOT
def test_a_models_folder_another_user_owns_is_refused(model_folder: Path) -> None:
    os.chown(model_folder.parent, OTHER_UID, OTHER_UID)
    with pytest.raises(ModelLoadError, match="holds the model folder and is not ours"):
        check_folder_ownership(model_folder)


@pytest.mark.parametrize("what", [".", "MAR-INF", "signature.json"])
def test_anything_every_user_may_write_to_is_refused(model_folder: Path, what: str) -> None:
    path = model_folder / what
    path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWOTH)
    with pytest.raises(ModelLoadError, match="is writable by other users"):
        check_folder_ownership(model_folder)


@AS_ROOT
@pytest.mark.parametrize("what", [".", "MAR-INF", "signature.json"])
def test_anything_a_shared_group_may_write_to_is_refused(model_folder: Path, what: str) -> None:
    path = model_folder / what
    os.chown(path, -1, OTHER_UID)  # nogroup, the primary group of nobody
    path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWGRP)
    with pytest.raises(
        ModelLoadError, match=f"is writable by other users \\(mode \\d+, group {OTHER_UID}\\)"
    ):
        check_folder_ownership(model_folder)


def test_a_group_of_this_user_alone_may_write(model_folder: Path) -> None:
    """Debian's and Ubuntu's user-private groups: umask 002 leaves what MMS unpacks group-writable."""
    if not group_of_this_user_alone(os.getegid()):
        pytest.skip(f"group {os.getegid()} has other users here")
    for path in (model_folder, *model_folder.rglob("*")):
        path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWGRP)
    check_folder_ownership(model_folder)


def test_a_shared_models_folder_must_be_sticky_like_tmp(model_folder: Path) -> None:
    model_folder.parent.chmod(0o777)
    with pytest.raises(ModelLoadError, match="holds the model folder and is not ours"):
        check_folder_ownership(model_folder)
    model_folder.parent.chmod(0o1777)
    check_folder_ownership(model_folder)


@pytest.mark.parametrize("kind", ["file", "folder", "fifo"])
def test_symbolic_links_and_special_files_are_refused(model_folder: Path, kind: str, tmp_path: Path) -> None:
    if kind == "file":
        (model_folder / "synset.txt").unlink()
        (model_folder / "synset.txt").symlink_to(tmp_path / "elsewhere.txt")
        expected = "synset.txt is a symbolic link"
    elif kind == "folder":
        (model_folder / "extra").symlink_to(tmp_path, target_is_directory=True)
        expected = "extra is a symbolic link"
    else:
        os.mkfifo(model_folder / "pipe")
        expected = "pipe is not a regular file or folder"
    with pytest.raises(ModelLoadError, match=expected):
        check_folder_ownership(model_folder)


@AS_ROOT
def test_the_handler_does_not_load_from_a_folder_another_user_made(model_folder: Path) -> None:
    relabel(model_folder)
    give_to_other_user(model_folder)
    with pytest.raises(Exception, match=f"belongs to uid {OTHER_UID}") as refused:
        InProcessService(model_folder)
    assert type(refused.value).__name__ == "ModelLoadError"  # the archive's own class


# --------------------------------------------------------------------- item 7: the core-lock folder
@pytest.fixture
def lock_folder(tmp_path: Path) -> Path:
    return tmp_path / "squeezenet-cores-0"


def hold(path: Path) -> int:
    """Another process's lock, as far as flock is concerned: a descriptor of our own."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


@pytest.fixture
def held() -> Iterator[list[int]]:
    descriptors: list[int] = []
    yield descriptors
    for descriptor in descriptors:
        os.close(descriptor)


@AS_ROOT
def test_a_lock_folder_another_user_made_is_not_used_even_with_every_lock_held(
    lock_folder: Path, held: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    lock_folder.mkdir(mode=0o700)
    held += [hold(lock_folder / f"{kind}-{i}.lock") for kind in ("core", "worker") for i in range(2)]
    give_to_other_user(lock_folder)
    assert shared_cores(2, lock_folder) is None
    assert f"fixed threads instead: {lock_folder} belongs to uid {OTHER_UID}" in caplog.text


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o711, 0o777])
def test_a_lock_folder_others_may_enter_is_not_used(lock_folder: Path, mode: int) -> None:
    lock_folder.mkdir()
    lock_folder.chmod(mode)
    with pytest.raises(OSError, match=f"has mode {mode:04o}, not 0700"):
        CoreTokens(2, lock_folder)
    assert shared_cores(2, lock_folder) is None


def test_a_lock_folder_that_is_a_symbolic_link_is_not_followed(lock_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "theirs"
    target.mkdir(mode=0o700)
    lock_folder.symlink_to(target, target_is_directory=True)
    assert shared_cores(2, lock_folder) is None
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name", ["core-1.lock", "worker-0.lock"])
def test_a_lock_file_that_is_a_symbolic_link_is_not_followed(
    lock_folder: Path, tmp_path: Path, name: str
) -> None:
    """The victim would create (or truncate, or lock) the file the link names."""
    lock_folder.mkdir(mode=0o700)
    (lock_folder / name).symlink_to(tmp_path / "chosen-by-them")
    with pytest.raises(OSError, match=f"{name} is a symbolic link"):
        CoreTokens(2, lock_folder)
    assert not (tmp_path / "chosen-by-them").exists()


def test_a_new_lock_folder_is_private(lock_folder: Path) -> None:
    tokens = CoreTokens(2, lock_folder)
    assert stat.S_IMODE(lock_folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in lock_folder.iterdir()} == {0o600}
    assert tokens.worker == 0


def test_a_home_core_held_too_long_is_worked_around_on_one_thread(
    lock_folder: Path, held: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """A stuck process of the same user holds this worker's home core: the batch waits the bound,
    then runs on one thread without borrowing the free core; once the lock is free, it is used."""
    tokens = CoreTokens(2, lock_folder, home_wait=0.05)
    held.append(hold(lock_folder / f"core-{tokens.worker % 2}.lock"))
    with tokens.working(), tokens.borrowed(2) as threads:
        assert threads == 1
    assert "stayed busy for 0.1 s" in caplog.text and "working on one thread without it" in caplog.text
    os.close(held.pop())
    with tokens.working(), tokens.borrowed(2) as threads:
        assert threads == 2


# ----------------------------------------------------------------------------- a stock MMS, once
@pytest.fixture(scope="module")
def shared_tmp_mms(
    tmp_path_factory: pytest.TempPathFactory, built
) -> Iterator[tuple[ModelServer, list[int]]]:
    """A stock MMS (no environment of ours, MMS's own logging) whose temporary folder another user
    got to before any model was loaded: ``squeezenet-cores-<uid>/`` is theirs and its locks are held."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user (chown) needs root")
    home = tmp_path_factory.mktemp("shared_tmp_mms")
    config = home / "config.properties"
    write_properties(
        config,
        {
            "inference_address": f"http://127.0.0.1:{free_port()}",
            "management_address": f"http://127.0.0.1:{free_port()}",
        },
    )
    store = tmp_path_factory.mktemp("shared_tmp_store")
    (store / built.archive.name).write_bytes(built.archive.read_bytes())
    server = ModelServer(home, store, config=config, lean_logging=False)
    server.start()  # it empties its temporary folder first: the other user acts after that
    held: list[int] = []
    try:
        locks = server.home / "tmp" / f"squeezenet-cores-{os.geteuid()}"
        locks.mkdir(mode=0o700)
        held += [hold(locks / f"{kind}-{i}.lock") for kind in ("core", "worker") for i in range(4)]
        give_to_other_user(locks)
        yield server, held
    finally:
        server.stop()
        for descriptor in held:
            os.close(descriptor)
        assert not server.processes()


def log_since(server: ModelServer, offset: int) -> str:
    with (server.log_dir / "mms_log.log").open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def log_size(server: ModelServer) -> int:
    log = server.log_dir / "mms_log.log"
    return log.stat().st_size if log.is_file() else 0


@pytest.mark.integration
def test_predictions_are_answered_while_another_user_holds_every_core_lock(shared_tmp_mms, built):
    """Before: workers READY, no answer after 60 s. Now the folder is refused and the answer comes."""
    server, _ = shared_tmp_mms
    offset = log_size(server)
    server.register(Registration(url=built.archive.name, name="victim", batch_size=1, workers=2))
    for _ in range(4):  # both workers, more than once
        answer = requests.post(f"{server.inference_url}/predictions/victim", data=PHOTO, timeout=60)
        assert answer.status_code == 200 and len(answer.json()) == 5
    logged = log_since(server, offset)
    assert f"not sharing cores with other workers, fixed threads instead: {server.home / 'tmp'}" in logged
    assert f"belongs to uid {OTHER_UID}" in logged


@pytest.mark.integration
def test_a_model_folder_another_user_made_in_mms_tmp_is_refused(shared_tmp_mms, built):
    """MMS unpacks into <tmp>/models/<sha1>/ and reuses that folder if it exists. Which <sha1>: the
    SHA-1 of what Java's ZipInputStream read of the archive, learnt here from a first registration.
    The same relabelled folder is served when it is ours (MMS does reuse it), refused when it is the
    other user's. (The worker's refusal message reaches MMS's log only some of the time, see
    ``ModelServer.load_error``; the in-process tests above show it.)"""
    from test_robustness import wait_until_unregistered

    server, _ = shared_tmp_mms
    archive = server.model_store / "takeover.mar"
    with zipfile.ZipFile(built.archive) as opened:  # another archive than the victim's: its own <sha1>
        files = {name: opened.read(name) for name in opened.namelist()}
    manifest = json.loads(files["MAR-INF/MANIFEST.json"])
    manifest["model"]["modelName"] = "takeover"
    files["MAR-INF/MANIFEST.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    files[SHA256SUMS] = sha256sums({k: v for k, v in files.items() if k != SHA256SUMS})
    write_zip(archive, files)
    models = server.home / "tmp" / "models"
    before = set(models.iterdir()) if models.is_dir() else set()
    server.register(Registration(url=archive.name, name="takeover-first"))
    [folder] = set(models.iterdir()) - before
    server.unregister("takeover-first")

    def plant() -> None:  # what the other user leaves there before the victim's MMS unpacks
        shutil.rmtree(folder, ignore_errors=True)
        relabel(unpack(archive, folder))

    plant()
    offset = log_size(server)
    server.register(Registration(url=archive.name, name="takeover-ours"))
    answer = requests.post(f"{server.inference_url}/predictions/takeover-ours", data=PHOTO, timeout=60)
    assert answer.status_code == 200
    assert "attacker label" in answer.json()[0]["class"]  # the planted folder is what MMS serves
    assert f"model folder already exists: {folder.name}" in log_since(server, offset)
    server.unregister("takeover-ours")

    plant()
    give_to_other_user(folder)
    params = {"url": archive.name, "model_name": "takeover", "initial_workers": 1, "synchronous": "true"}
    response = requests.post(f"{server.management_url}/models", params=params, timeout=120)
    assert response.status_code == 500, response.text
    assert wait_until_unregistered(server, "takeover") == 404
    refused = requests.post(f"{server.inference_url}/predictions/takeover", data=PHOTO, timeout=60)
    assert refused.status_code == 404
