"""Settings read at the edges (CLI, flows) from ``CLASP_*`` environment variables."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from clasp_ingest.connectors.base import OpenOptions
    from clasp_ingest.errors import ConfigError
    from clasp_ingest.media.decode import DecodeOptions
    from clasp_ingest.media.segment import SegmenterOptions, SegmenterOptionsError

__all__ = [
    "MAX_BATCH",
    "MAX_DOWNLOAD_DEADLINE_S",
    "MAX_READ_TIMEOUT_S",
    "MAX_THREADS",
    "Settings",
    "default_data_dir",
    "is_device",
]

#: The most points (or segments) one request or batch may hold: far above what helps, far
#: below what overflows an engine's integers (``--batch-size``, ``CLASP_EMBED_BATCH_SIZE``).
MAX_BATCH = 65_536
#: The most CPU threads a model may run (``CLASP_TORCH_THREADS``): more than any one machine
#: this runs on has cores. Each thread is started and spins for a core of its own, so a typo
#: stalled the run (100000 gave no result in 2 minutes where the default took 6 s).
MAX_THREADS = 1024
#: The longest wait for the next bytes (``CLASP_READ_TIMEOUT_S``): a day, as
#: :class:`~clasp_ingest.media.decode.DecodeOptions` and
#: :class:`~clasp_ingest.connectors.base.OpenOptions` allow; ``inf`` or a few hundred years
#: overflowed the waits of Python (``timestamp out of range``) and failed every item.
MAX_READ_TIMEOUT_S = 86_400
#: The longest download deadline (``--download-deadline``, ``CLASP_DOWNLOAD_DEADLINE_S``): a
#: week, as ``OpenOptions.deadline_s`` allows (``inf`` killed its watchdog thread).
MAX_DOWNLOAD_DEADLINE_S = 7 * 86_400

#: The settings that become :class:`~clasp_ingest.media.segment.SegmenterOptions` fields.
_SEGMENTER_FIELDS = ("min_segment_s", "max_segment_s", "min_pause_s", "speech_pad_s")
#: What each of them is, for messages.
_SEGMENTER_MEANING = {
    "min_segment_s": "the shortest segment",
    "max_segment_s": "the longest segment",
    "min_pause_s": "the shortest pause that ends a segment",
    "speech_pad_s": "the padding around speech",
}


def default_data_dir() -> Path:
    """Where the embedded Qdrant and caches live unless configured."""
    return Path.home() / ".local" / "share" / "clasp-ingest"


def is_device(name: str) -> bool:
    """Whether ``name`` names a device models run on: ``auto`` (CUDA when present), ``cpu``,
    ``cuda`` or ``cuda:N``."""
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is not None


@functools.lru_cache(maxsize=8)
def _ffmpeg_answer(program: str) -> str | None:
    """Why ``program`` is not ffmpeg, or None when ``program -version`` answers as ffmpeg does,
    from its first byte: decoding reads its standard output as samples, so a wrapper that
    prints a line first would shift every sample (asked once per program and process)."""
    try:
        answer = subprocess.run(
            [program, "-hide_banner", "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "its -version did not answer in 15 s"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"it cannot be run ({exc})"
    if not answer.stdout.startswith("ffmpeg version"):
        said = answer.stdout.lstrip()
        if said.startswith("ffmpeg version") or "\nffmpeg version" in said[:4096]:
            return "it prints something before ffmpeg's own output, which decoding would read as samples"
        return "its -version does not say 'ffmpeg version'"
    return None


class Settings(BaseSettings):
    """Every knob of clasp-ingest; library functions take explicit arguments instead."""

    model_config = SettingsConfigDict(env_prefix="CLASP_", env_file=None, extra="ignore")

    # model
    model: str = Field("clasp-mini", description="Model preset name or a model directory.")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="'auto' (fp32 on CPU, bf16 on GPU), 'fp32', 'fp16', 'bf16'."
    )
    engine: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="'auto' (ONNX Runtime on the CPU for models it runs, e.g. clasp-mini; else torch), "
        "'onnx' or 'torch'.",
    )
    embed_batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="Segments per embedding batch.")
    gpu_slots: int = Field(
        1, ge=1, description="Embedding batches one flow worker process runs at once (its share of a GPU)."
    )
    model_dir: Path | None = Field(None, description="Local directory searched for model files.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=MAX_THREADS,
        description="CPU threads of the model (torch or ONNX Runtime), 1 to 1024 (more than the usable "
        "cores only slows it down); default: one less than the usable cores (decoding runs beside "
        "embedding on a thread); `train`: every usable core.",
    )

    # segmentation (seconds; max_segment_s >= 2 × min_segment_s + 2 × speech_pad_s)
    min_segment_s: float = Field(1.0, gt=0, allow_inf_nan=False)
    max_segment_s: float = Field(15.0, gt=0, allow_inf_nan=False)
    min_pause_s: float = Field(0.3, gt=0, allow_inf_nan=False)
    speech_pad_s: float = Field(0.1, ge=0, allow_inf_nan=False)

    # media
    ffmpeg: str | None = Field(None, description="ffmpeg executable; default: PATH, then imageio-ffmpeg.")
    read_timeout_s: float = Field(
        60.0,
        gt=0,
        le=MAX_READ_TIMEOUT_S,
        allow_inf_nan=False,
        description="Longest wait for the next bytes of a file or download (s), at most a day.",
    )

    # downloads (http(s), s3, gs, feeds)
    download_deadline_s: float = Field(
        3600.0,
        gt=0,
        le=MAX_DOWNLOAD_DEADLINE_S,
        allow_inf_nan=False,
        description="Longest time one download may take (s), at most a week.",
    )
    min_download_rate: float = Field(
        1024.0,
        ge=0,
        allow_inf_nan=False,
        description="Slowest average download rate accepted (bytes/s; 0: no minimum).",
    )
    download_rate_window_s: float = Field(
        30.0,
        gt=0,
        le=MAX_READ_TIMEOUT_S,
        allow_inf_nan=False,
        description="Window of the average rate (s), at most a day.",
    )
    allow_private_hosts: bool = Field(
        False,
        description="Let remote documents (feed enclosures, index links, redirects) lead to loopback, "
        "private, link-local... addresses (the host you give is always allowed).",
    )
    feed_cache_dir: Path | None = Field(
        None,
        description="Where http(s) feeds' documents are kept, so that the next run asks their "
        "servers whether they changed (a conditional GET); default: ~/.cache/clasp-ingest/feeds.",
    )

    # store
    qdrant_url: str | None = None
    qdrant_api_key: str | None = Field(None, repr=False)  # not in repr(settings), logs, tracebacks
    qdrant_path: Path = Field(default_factory=lambda: default_data_dir() / "qdrant")
    qdrant_grpc: bool = False
    collection: str = "clasp_segments"

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the ``CLASP_*`` variables; a bad one is a ``ConfigError`` naming the
        variable and its value (pydantic's ``ValidationError`` named the field: ``qdrant_path``)."""
        from clasp_ingest.errors import ConfigError

        try:
            return cls.model_validate({})
        except ValidationError as exc:
            raise ConfigError(settings_problems(exc)) from None

    @classmethod
    def number_range(cls, field: str) -> str:
        """The numbers the setting ``field`` takes, in words for messages (``> 0 and <= 86400``):
        a ``CLASP_*_S=nan`` was told only "Input should be a finite number"."""
        import annotated_types

        signs = {annotated_types.Gt: (">", "gt"), annotated_types.Ge: (">=", "ge"),
                 annotated_types.Lt: ("<", "lt"), annotated_types.Le: ("<=", "le")}  # fmt: skip
        bounds = [
            f"{signs[type(rule)][0]} {getattr(rule, signs[type(rule)][1]):g}"
            for rule in cls.model_fields[field].metadata
            if type(rule) in signs
        ]
        return " and ".join(bounds)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not is_device(value):
            raise ValueError("use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @field_validator("ffmpeg")
    @classmethod
    def _ffmpeg(cls, value: str | None) -> str | None:
        """A named ffmpeg that is no program fails every command at once, not every item."""
        import shutil

        if not value:
            return None
        found = shutil.which(os.path.expanduser(value))  # noqa: PTH111 - a Path drops the './' of './ffwrap'
        if found is None:
            raise ValueError(
                "no ffmpeg program there; give its path, or leave it unset (PATH, then imageio-ffmpeg)"
            )
        why = _ffmpeg_answer(found)  # ffprobe or sox by mistake: every file would seem broken
        if why is not None:
            raise ValueError(f"{found!r} is not ffmpeg ({why}); give ffmpeg's path")
        return value

    @field_validator("qdrant_url", "qdrant_path", "model", "collection", "feed_cache_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object, info: ValidationInfo) -> object:
        """An empty ``CLASP_QDRANT_URL`` / ``CLASP_QDRANT_PATH`` / ``CLASP_MODEL`` /
        ``CLASP_COLLECTION`` / ``CLASP_FEED_CACHE_DIR`` (``VAR=`` in a unit file, a template left
        blank) is refused, as the options are: it is neither unset nor the current folder
        (``CLASP_MODEL=`` said "model directory '' has no config.json"; ``CLASP_COLLECTION=' '``
        made a collection named " "; ``CLASP_FEED_CACHE_DIR=`` would keep feeds in the current folder)."""
        if isinstance(value, str) and not value.strip():
            wanted = {
                "qdrant_url": "the server's URL (http://host:6333)",
                "qdrant_path": "a folder",
                "model": "a model preset or folder, or unset it (the default is clasp-mini)",
                "collection": "a collection name, or unset it (the default is clasp_segments)",
                "feed_cache_dir": "a folder, or unset it (the default is ~/.cache/clasp-ingest/feeds)",
            }[str(info.field_name)]
            raise ValueError(f"the value is empty; give {wanted}")
        return value

    @field_validator("qdrant_api_key")
    @classmethod
    def _no_key(cls, value: str | None) -> str | None:
        """An empty ``CLASP_QDRANT_API_KEY`` (``VAR=`` in a unit file or compose file) means no key."""
        return value if value and value.strip() else None

    @field_validator("qdrant_path", "model_dir", "feed_cache_dir")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        """``~`` in a path from the environment means the home folder, as in a shell (an
        unexpanded ``CLASP_QDRANT_PATH=~/store`` made a folder named ``~``)."""
        return value.expanduser() if value is not None else None

    def segmenter_options(
        self, *, flags: Mapping[str, str] | None = None, **overrides: float | None
    ) -> SegmenterOptions:
        """The segmenter's options from these settings; ``overrides`` that are not None win.

        ``flags``: the command-line option of each override (``{"min_segment_s": "--min-s"}``).
        Values that do not fit raise ``ConfigError`` naming where each came from (the option,
        the ``CLASP_*`` variable, or the default) and the remedy; ``BadOptionError`` when one
        of them is a command-line option (bad usage).
        """
        from clasp_ingest.media.segment import SegmenterOptions, SegmenterOptionsError

        values: dict[str, float] = {name: getattr(self, name) for name in _SEGMENTER_FIELDS}
        given = {key: value for key, value in overrides.items() if value is not None}
        values.update(given)
        try:
            return SegmenterOptions(**values)
        except SegmenterOptionsError as exc:
            raise _Origins(values, dict(flags or {}), set(given), self.model_fields_set).error(exc) from None

    def open_options(self, **overrides: float | bool | None) -> OpenOptions:
        """Download limits from these settings; ``overrides`` (OpenOptions fields) not None win."""
        from clasp_ingest.connectors.base import OpenOptions
        from clasp_ingest.model.assets import default_cache_dir

        values: dict[str, float | bool | Path] = {
            "feed_cache": self.feed_cache_dir or default_cache_dir() / "feeds",
            "read_timeout_s": self.read_timeout_s,
            "deadline_s": self.download_deadline_s,
            "min_rate_bytes_s": self.min_download_rate,
            "rate_window_s": self.download_rate_window_s,
            "allow_private_hosts": self.allow_private_hosts,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return OpenOptions(**values)

    def decode_options(self) -> DecodeOptions:
        """ffmpeg and its stall timeout, from these settings; damaged data (a truncated or
        corrupt file) is decoded as far as it goes, with a warning (``strict=False``)."""
        from clasp_ingest.media.decode import DecodeOptions

        return DecodeOptions(ffmpeg=self.ffmpeg, read_timeout_s=self.read_timeout_s, strict=False)


class _Origins:
    """Where each segmenter value came from, for the message of a bad one: an override (``given``;
    the command-line option ``flags`` names for its field, if any), a ``CLASP_*`` variable
    (``from_env``: the fields the environment set) or the default."""

    def __init__(
        self, values: dict[str, float], flags: dict[str, str], given: set[str], from_env: set[str]
    ) -> None:
        self.values, self.flags, self.given, self.from_env = values, flags, given, from_env

    def knob(self, field: str) -> str:
        """What the user changes: how they set the value (option, override or variable), else
        the command's option, else the variable."""
        variable = f"CLASP_{field.upper()}"
        if field in self.given:
            return self.flags.get(field, field)
        return variable if field in self.from_env else self.flags.get(field, variable)

    def origin(self, field: str) -> str:
        """How the value was set, e.g. ``--max-s 1``, ``CLASP_MAX_SEGMENT_S=1``, ``1 s by default``."""
        value = f"{self.values[field]:g}"
        if field in self.given and field in self.flags:
            return f"{self.flags[field]} {value}"
        if field in self.given or field in self.from_env:
            return f"{self.knob(field)}={value}"
        return f"{value} s by default"

    def error(self, exc: SegmenterOptionsError) -> ConfigError:
        """``exc`` in the user's terms; ``BadOptionError`` when a command-line option is involved."""
        from clasp_ingest.errors import BadOptionError, ConfigError

        if exc.minimum is not None:  # max_segment_s too short for the others
            involved: tuple[str, ...] = ("max_segment_s", "min_segment_s", "speech_pad_s")
            message = (
                f"the longest segment ({self.origin('max_segment_s')}) must be at least 2 × the "
                f"shortest ({self.origin('min_segment_s')}) + 2 × the padding around speech "
                f"({self.origin('speech_pad_s')}) = {exc.minimum:g} s, so long speech can be split; "
                f"raise {self.knob('max_segment_s')} to {exc.minimum:g} or more, or lower "
                f"{self.knob('min_segment_s')}"
            )
        else:
            involved = (exc.field,)
            meaning = _SEGMENTER_MEANING.get(exc.field, exc.field)
            message = f"{self.origin(exc.field)}: {meaning} (s) {exc.rule}; change {self.knob(exc.field)}"
        options = [self.flags[field] for field in involved if field in self.given and field in self.flags]
        return BadOptionError(message, options[0]) if options else ConfigError(message)


def settings_problems(exc: ValidationError) -> str:
    """What is wrong with the ``CLASP_*`` variables ``exc`` (``Settings``' validation) is about,
    each named as the variable and its value, and the remedy: how the CLI says it, and the
    ``ConfigError`` of :meth:`Settings.from_env`."""
    problems = [
        f"CLASP_{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {_reason(e)}"
        if e["loc"]
        else f"CLASP_* settings: {_reason(e)}"
        for e in exc.errors()
    ]
    return "; ".join(problems) + "; fix the variable or unset it"


def _reason(error: Any) -> str:
    """A settings check's words for ``error`` (pydantic's), without the "Value error, " put
    before them; with the range of a setting given ``nan`` or ``inf`` ("Input should be a
    finite number" did not say which numbers would do)."""
    said = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "finite_number" and len(error["loc"]) == 1:
        return f"{said} {Settings.number_range(str(error['loc'][0]))}".rstrip()
    return said
