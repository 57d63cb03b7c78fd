"""A model version's files as one archive, to take away from where it was trained: the adapter, the merged
weights, the tokenizer and result files, with the version's record (`anytune-model.json`).

The archive is a plain tar written once per version (versions never change) into the storage layer, with
its SHA-256 beside it, so a download can be resumed with HTTP Range and checked at the end. It is built the
same way every time (sorted names, no times or owners), so the same files give the same digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from anytune.api import EvalTarget
from anytune.errors import CapabilityError, DataError, UsageError
from anytune.pipeline.datasets import sha256_of_file
from anytune.registry.records import ModelVersion
from anytune.storage import open_storage

MANIFEST = "anytune-model.json"


def archive_key(model: ModelVersion) -> str:
    """Where a version's archive is kept: one key per project, name and version (the project `default`
    keeps the key it had before projects, so archives made then are still found)."""
    version = f"{model.name}@{model.version}"
    named = hashlib.sha256((version if model.project == "default" else f"{model.project}/{version}").encode())
    named = named.hexdigest()[:32]
    return f"models/{named}.tar"


def folders_of(model: ModelVersion) -> dict[str, Path]:
    """What the archive holds besides the record: `adapter/` and `merged/`, those that are folders here."""
    artifact = model.artifact
    found: dict[str, Path] = {}
    for name, value in (("merged", artifact.merged_path), ("adapter", artifact.path)):
        if value and Path(value).is_dir() and Path(value) not in found.values():
            found[name] = Path(value)
    return found


def version_of(target: EvalTarget, ref: str) -> ModelVersion:
    """The registered version a resolved target is (a job's model, or the model named)."""
    if target.model is None:
        raise UsageError(
            f"{ref} is not a registered model", hint="name a model: NAME, NAME@VERSION, NAME@ALIAS"
        )
    return target.model


def model_archive(model: ModelVersion) -> tuple[str, str]:
    """The version's archive: its storage key and its `sha256:<hex>` (built on first ask)."""
    storage, key = open_storage(), archive_key(model)
    digest_key = f"{key}.sha256"
    if storage.exists(key) and storage.exists(digest_key):  # written before, here or by the trainer's machine
        return key, storage.local_file(digest_key).read_text().strip()
    folders = folders_of(model)
    if not folders:
        artifact = model.artifact
        if artifact.kind == "provider_model" or artifact.path is None:
            raise CapabilityError(
                f"{model.ref} is a {model.provider} model ({artifact.model_id}): it has no files to take away",
                hint=f"call it through {model.provider} as {artifact.model_id}, or `anytune serve {model.ref}` "
                "on the server, which proxies it",
            )
        raise DataError(
            f"{model.ref}: its files ({artifact.path}) are no longer on the server",
            hint="they were removed from the server's disk; train or export it again",
        )
    with tempfile.TemporaryDirectory(prefix="anytune-archive-") as tmp:
        tar_path = Path(tmp) / "model.tar"
        digest = write_archive(model, folders, tar_path)
        (Path(tmp) / "digest").write_text(digest)
        storage.put_file(key, tar_path)
        storage.put_file(digest_key, Path(tmp) / "digest")
    return key, digest


def share(model: ModelVersion) -> None:
    """Put a version's archive in the storage layer now (a worker that trained it, before its files are out
    of every other machine's reach); a version with no files here is left alone."""
    if folders_of(model):
        model_archive(model)


def write_archive(model: ModelVersion, folders: dict[str, Path], target: Path) -> str:
    """The tar of `folders` and the record; its `sha256:<hex>`."""

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.issym() or info.islnk():
            return None  # a link could point anywhere on the reader's machine
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        return info

    manifest = model.model_dump_json(indent=1).encode()
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        info = plain(tarfile.TarInfo(MANIFEST))
        assert info is not None
        info.size, info.mode = len(manifest), 0o644
        tar.addfile(info, io.BytesIO(manifest))
        for name, folder in sorted(folders.items()):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    tar.add(
                        path, f"{name}/{path.relative_to(folder).as_posix()}", recursive=False, filter=plain
                    )
    return sha256_of_file(target)


def unpack(tar_path: Path, out_dir: Path, digest: str | None = None) -> ModelVersion:
    """Extract a model archive into `out_dir` (nothing outside it: tarfile's `data` filter), and return the
    version with its artifact pointing at the files here."""
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} exists and is not empty", hint="choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")
        model = local_version(ModelVersion.model_validate(json.loads((tmp / MANIFEST).read_text())), out_dir)
        if digest:  # what a later pull compares with, to fetch nothing when it is the same
            metadata = {**model.artifact.metadata, "archive_sha256": digest}
            model = model.model_copy(
                update={"artifact": model.artifact.model_copy(update={"metadata": metadata})}
            )
        (tmp / MANIFEST).write_text(model.model_dump_json(indent=1))
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model


def local_version(model: ModelVersion, folder: Path) -> ModelVersion:
    """The version as pulled into `folder`: its artifact's paths are the folders here."""
    artifact = model.artifact
    old = {artifact.path: "adapter", artifact.merged_path: "merged"}
    if artifact.merged_path and artifact.merged_path == artifact.path:
        old[artifact.path] = "merged"
    moved = {k: str(folder / v) for k, v in old.items() if k}
    update = {
        "path": moved.get(artifact.path) if artifact.path else None,
        "merged_path": moved.get(artifact.merged_path) if artifact.merged_path else None,
        "model_id": moved.get(artifact.model_id, artifact.model_id),
        "metadata": {k: v for k, v in artifact.metadata.items() if k != "base_model_path"},
    }
    return model.model_copy(
        update={"artifact": artifact.model_copy(update=update), "model_id": update["model_id"]}
    )


def default_folder(model: ModelVersion) -> Path:
    from anytune.settings import anytune_home

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model.name)[:100] or "model"
    return anytune_home() / "models" / safe / str(model.version)


def pull_into(
    model: ModelVersion, digest: str, out_dir: Path | None, fetch: Callable[[Path], Path]
) -> ModelVersion:
    """Unpack the version's archive into `out_dir` (its default folder if None), unless the same archive
    was pulled there before. `fetch(part)` brings the archive (into `part`, or from where it already is);
    a fetched archive whose SHA-256 is not `digest` is refused and removed."""
    folder = Path(out_dir).expanduser().resolve() if out_dir else default_folder(model)
    before = pulled(folder)
    if before is not None and before.artifact.metadata.get("archive_sha256") == digest:
        return before
    if before is not None and out_dir is None:  # a stale pull of the same version: replaced
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    part = folder.parent / f".{folder.name}.tar.part"
    tar = fetch(part)
    try:
        got = sha256_of_file(tar)
        if got != digest:
            raise DataError(
                f"the archive of {model.ref} hashes to {got}, not {digest}",
                hint="it was corrupted on the way: pull it again",
            )
        pulled_model = unpack(tar, folder, digest)
    finally:
        part.unlink(missing_ok=True)
    return pulled_model


def pull_here(
    model: ModelVersion, out_dir: Path | None, on_progress: Callable[[int, int], None] | None
) -> ModelVersion:
    """`pull` in this process: the archive is in this machine's storage already."""
    key, digest = model_archive(model)
    tar = open_storage().local_file(key)
    if on_progress is not None:
        on_progress(tar.stat().st_size, tar.stat().st_size)
    return pull_into(model, digest, out_dir, lambda _part: tar)


def pulled(folder: Path) -> ModelVersion | None:
    """The version already pulled into `folder`, if one is."""
    try:
        return ModelVersion.model_validate(json.loads((Path(folder) / MANIFEST).read_text()))
    except (OSError, ValueError):
        return None


__all__ = [
    "MANIFEST",
    "archive_key",
    "default_folder",
    "local_version",
    "model_archive",
    "pull_here",
    "pull_into",
    "pulled",
    "share",
    "unpack",
    "version_of",
    "write_archive",
]
