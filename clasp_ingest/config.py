"""Settings read at the edges (CLI, flows) from ``CLASP_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    dtype: str = Field("auto", description="'auto' (fp32 on CPU, bf16 on GPU), 'fp32', 'fp16', 'bf16'.")
    embed_batch_size: int = Field(16, ge=1)
    model_dir: Path | None = Field(None, description="Local directory searched for model files.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads when a model loads; default: one less than the usable cores "
        "(decoding runs beside embedding on a thread).",
    )

    # segmentation
    min_segment_s: float = Field(1.0, gt=0)
    max_segment_s: float = Field(15.0, gt=0)
    min_pause_s: float = Field(0.3, ge=0)
    speech_pad_s: float = Field(0.1, ge=0)

    # media
    ffmpeg: str | None = Field(None, description="ffmpeg executable; default: PATH, then imageio-ffmpeg.")
    read_timeout_s: float = Field(60.0, gt=0)

    # store
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_path: Path = Field(default_factory=lambda: default_data_dir() / "qdrant")
    qdrant_grpc: bool = False
    collection: str = "clasp_segments"
