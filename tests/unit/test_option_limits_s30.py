"""Every ``CLASP_*`` number and option class refuses what would fail later, deep inside: NaN,
infinity, a wait Python's timers overflow on, a value of the wrong type (tester 4, session 30)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from clasp_ingest.connectors.base import MAX_DEADLINE_S, MAX_TIMEOUT_S, OpenOptions
from clasp_ingest.retriever import ClipOptions
from pydantic import ValidationError

from clasp_ingest.config import (
    MAX_BATCH,
    MAX_DOWNLOAD_DEADLINE_S,
    MAX_READ_TIMEOUT_S,
    MAX_THREADS,
    Settings,
)
from clasp_ingest.errors import ConfigError
from clasp_ingest.media import decode
from clasp_ingest.media.decode import DecodeOptions
from clasp_ingest.media.segment import SegmenterOptions
from clasp_ingest.pipeline import PipelineOptions
from clasp_ingest.transcribe import TranscriberOptions

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("CLASP_READ_TIMEOUT_S", "inf", "finite number"),  # every item failed: OverflowError
        ("CLASP_READ_TIMEOUT_S", "1e10", "less than or equal to 86400"),
        ("CLASP_DOWNLOAD_DEADLINE_S", "1e10", "less than or equal to 604800"),  # a traceback per URL
        ("CLASP_DOWNLOAD_DEADLINE_S", "inf", "finite number"),
        ("CLASP_DOWNLOAD_RATE_WINDOW_S", "nan", "finite number"),
        ("CLASP_MIN_DOWNLOAD_RATE", "inf", "finite number"),
        ("CLASP_TORCH_THREADS", "100000", "less than or equal to 1024"),  # no result in 2 minutes
        ("CLASP_EMBED_BATCH_SIZE", "99999999999999999999", "less than or equal to 65536"),  # as --batch-size
        ("CLASP_COLLECTION", " ", "the value is empty; give a collection name"),  # as --collection ' '
    ],
)
def test_settings_refuse_what_the_options_refuse(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=said):
        Settings()


def test_settings_keep_values_up_to_their_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "CLASP_READ_TIMEOUT_S": "86400",
        "CLASP_DOWNLOAD_DEADLINE_S": "604800",
        "CLASP_DOWNLOAD_RATE_WINDOW_S": "86400",
        "CLASP_TORCH_THREADS": "1024",
        "CLASP_EMBED_BATCH_SIZE": "65536",
        "CLASP_COLLECTION": "talks",
    }.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert (settings.torch_threads, settings.embed_batch_size, settings.collection) == (1024, 65536, "talks")
    assert settings.open_options().deadline_s == 604800 and settings.decode_options().read_timeout_s == 86400
    assert (MAX_THREADS, MAX_BATCH) == (1024, 65536)


def test_the_settings_bounds_are_those_of_the_option_classes() -> None:
    """A value the settings let through is one the options take (else: an error per item)."""
    assert MAX_READ_TIMEOUT_S == decode.MAX_READ_TIMEOUT_S == MAX_TIMEOUT_S
    assert MAX_DOWNLOAD_DEADLINE_S == MAX_DEADLINE_S


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: OpenOptions(read_timeout_s=NAN), "OpenOptions.read_timeout_s must be a finite number"),
        (lambda: OpenOptions(deadline_s=INF), "OpenOptions.deadline_s must be a finite number"),
        (lambda: OpenOptions(deadline_s=1e10), "OpenOptions.deadline_s must be at most 604800"),
        (lambda: OpenOptions(read_timeout_s=1e5), "OpenOptions.read_timeout_s must be at most 86400"),
        (lambda: OpenOptions(min_rate_bytes_s=NAN), "OpenOptions.min_rate_bytes_s must be a finite"),
        (lambda: OpenOptions(rate_window_s=INF), "OpenOptions.rate_window_s must be a finite number"),
        (lambda: OpenOptions(deadline_s=None), r"OpenOptions.deadline_s .* got None"),  # type: ignore[arg-type]
        (lambda: OpenOptions(deadline_s=0), "deadline_s and rate_window_s must be > 0"),  # as before
    ],
)
def test_open_options_refuse_non_numbers_and_waits_python_cannot_time(
    make: Callable[[], object], said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        make()


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda: DecodeOptions(read_timeout_s=NAN), "DecodeOptions.read_timeout_s must be a finite number"),
        (lambda: DecodeOptions(read_timeout_s=INF), "DecodeOptions.read_timeout_s must be a finite number"),
        (lambda: DecodeOptions(read_timeout_s=1e10), r"DecodeOptions.read_timeout_s must be at most 86400"),
        (lambda: DecodeOptions(sample_rate=NAN), "DecodeOptions.sample_rate must be a finite number"),  # type: ignore[arg-type]
        (lambda: ClipOptions(context_s=NAN), "ClipOptions.context_s must be a finite number"),
        (lambda: ClipOptions(fade_s=NAN), "ClipOptions.fade_s must be a finite number"),
        (lambda: ClipOptions(timeout_s=NAN), "ClipOptions.timeout_s must be a finite number"),
        (lambda: ClipOptions(timeout_s=3e6), "ClipOptions.timeout_s must be at most 86400"),  # epoll's limit
        (lambda: PipelineOptions(retry_delay_s=NAN), "PipelineOptions.retry_delay_s must be a finite"),
        (lambda: PipelineOptions(retry_delay_s=INF), "PipelineOptions.retry_delay_s must be a finite"),
        (lambda: PipelineOptions(embed_batch_size=None), "PipelineOptions.embed_batch_size must be a whole"),  # type: ignore[arg-type]
        (lambda: TranscriberOptions(cpu_threads=NAN), "TranscriberOptions.cpu_threads must be a whole"),  # type: ignore[arg-type]
        (lambda: TranscriberOptions(device=None), "TranscriberOptions.device must be a string"),  # type: ignore[arg-type]
        (lambda: TranscriberOptions(language=1), "TranscriberOptions.language must be a Whisper code"),  # type: ignore[arg-type]
        (lambda: TranscriberOptions(compute_type=8), "TranscriberOptions.compute_type must be"),  # type: ignore[arg-type]
        (lambda: SegmenterOptions(min_pause_s=None), "min_pause_s must be a number, not NoneType"),  # type: ignore[arg-type]
        (lambda: SegmenterOptions(max_segment_s="15"), "max_segment_s must be a number, not str"),  # type: ignore[arg-type]
    ],
)
def test_option_classes_name_the_field_of_a_bad_value(make: Callable[[], object], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        make()


def test_option_classes_keep_their_valid_values() -> None:
    assert OpenOptions(read_timeout_s=86400, deadline_s=604800, rate_window_s=86400, min_rate_bytes_s=0)
    assert DecodeOptions(read_timeout_s=86400, sample_rate=48_000).block_bytes > 0
    assert ClipOptions(context_s=2, fade_s=0, timeout_s=86400, sample_rate=16000).timeout_s == 86400
    assert PipelineOptions(retry_delay_s=0, retries=0, prefetch_segments=0).retries == 0
    assert (
        TranscriberOptions(device="cuda:1", language="en", compute_type="int8", cpu_threads=2).cpu_threads
        == 2
    )
    assert SegmenterOptions(min_segment_s=1, max_segment_s=15, neg_threshold=None).min_segment_s == 1


def test_a_byte_limit_past_floats_is_no_limit() -> None:
    """``--max-bytes`` with 401 digits meant "no limit"; the finiteness check made it "unexpected
    OverflowError" (reviewer 3)."""
    assert OpenOptions(max_bytes=10**400, chunk_bytes=2**70).max_bytes == 10**400
