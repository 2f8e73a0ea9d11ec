"""Settings read at the edges (CLI, flows) from ``CLASP_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from clasp_ingest.connectors.base import OpenOptions
    from clasp_ingest.media.decode import DecodeOptions
    from clasp_ingest.media.segment import SegmenterOptions

__all__ = ["Settings", "default_data_dir"]


def default_data_dir() -> Path:
    """Where the embedded Qdrant and caches live unless configured."""
    return Path.home() / ".local" / "share" / "clasp-ingest"


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
    embed_batch_size: int = Field(32, ge=1, description="Segments per embedding batch.")
    model_dir: Path | None = Field(None, description="Local directory searched for model files.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads of the model (torch or ONNX Runtime); default: one less than the "
        "usable cores (decoding runs beside embedding on a thread); `train`: every usable core.",
    )

    # segmentation
    min_segment_s: float = Field(1.0, gt=0)
    max_segment_s: float = Field(15.0, gt=0)
    min_pause_s: float = Field(0.3, ge=0)
    speech_pad_s: float = Field(0.1, ge=0)

    # media
    ffmpeg: str | None = Field(None, description="ffmpeg executable; default: PATH, then imageio-ffmpeg.")
    read_timeout_s: float = Field(60.0, gt=0)

    # downloads (http(s), s3, gs, feeds)
    download_deadline_s: float = Field(3600.0, gt=0, description="Longest time one download may take.")
    min_download_rate: float = Field(
        1024.0, ge=0, description="Slowest average download rate accepted (bytes/s; 0: no minimum)."
    )
    download_rate_window_s: float = Field(30.0, gt=0, description="Window of the average rate (s).")
    allow_private_hosts: bool = Field(
        False,
        description="Let remote documents (feed enclosures, index links, redirects) lead to loopback, "
        "private, link-local... addresses (the host you give is always allowed).",
    )

    # store
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_path: Path = Field(default_factory=lambda: default_data_dir() / "qdrant")
    qdrant_grpc: bool = False
    collection: str = "clasp_segments"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError("use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @field_validator("qdrant_path", "model_dir")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        """``~`` in a path from the environment means the home folder, as in a shell (an
        unexpanded ``CLASP_QDRANT_PATH=~/store`` made a folder named ``~``)."""
        return value.expanduser() if value is not None else None

    def segmenter_options(self, **overrides: float | None) -> SegmenterOptions:
        """The segmenter's options from these settings; ``overrides`` that are not None win."""
        from clasp_ingest.media.segment import SegmenterOptions

        values: dict[str, float] = {
            "min_segment_s": self.min_segment_s,
            "max_segment_s": self.max_segment_s,
            "min_pause_s": self.min_pause_s,
            "speech_pad_s": self.speech_pad_s,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return SegmenterOptions(**values)

    def open_options(self, **overrides: float | bool | None) -> OpenOptions:
        """Download limits from these settings; ``overrides`` (OpenOptions fields) not None win."""
        from clasp_ingest.connectors.base import OpenOptions

        values: dict[str, float | bool] = {
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
