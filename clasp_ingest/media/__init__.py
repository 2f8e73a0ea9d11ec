"""Media: streamed ffmpeg decoding to 16 kHz mono and sentence-like speech segmentation."""

from __future__ import annotations

from clasp_ingest.errors import MediaDecodeError  # what these raise for unreadable input
from clasp_ingest.media.decode import DecodeOptions, decode_audio, find_ffmpeg, stream_audio
from clasp_ingest.media.segment import SegmenterOptions, SpeechSegment, segment_blocks, segment_media

__all__ = [
    "DecodeOptions",
    "MediaDecodeError",
    "SegmenterOptions",
    "SpeechSegment",
    "decode_audio",
    "find_ffmpeg",
    "segment_blocks",
    "segment_media",
    "stream_audio",
]
