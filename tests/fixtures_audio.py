"""Reusable audio fixtures built on the spot: espeak-ng speech, numpy signals, ffmpeg containers.

Nothing is downloaded. Needs ``espeak-ng`` (``make system-deps``) and an ffmpeg (PATH or
imageio-ffmpeg, via :func:`clasp_ingest.media.decode.find_ffmpeg`).
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.media.decode import decode_audio, find_ffmpeg

__all__ = [
    "SR",
    "SpokenTrack",
    "build_track",
    "convert",
    "corrupt_middle",
    "mux_video",
    "noise",
    "read_wav",
    "require_espeak",
    "surround_96k",
    "synth_speech",
    "tone",
    "trim_silence",
    "truncate",
    "video_only",
    "write_wav",
]

SR = 16_000

#: Twenty plain English sentences (our own text) for long-file tests.
SENTENCES = (
    "The library opens at nine in the morning on weekdays.",
    "Please remember to bring your notebook to the next lecture.",
    "Rivers carry fresh water from the mountains down to the sea.",
    "The committee will announce its decision early next month.",
    "Bright stars are easier to see far away from city lights.",
    "She planted tomatoes and beans in the small garden behind the house.",
    "Our train was delayed by twenty minutes because of the snow.",
    "Photosynthesis turns sunlight into chemical energy for plants.",
    "He repaired the old bicycle with parts from the hardware store.",
    "The museum exhibits paintings from several different centuries.",
    "Children learn new languages quickly when they hear them every day.",
    "The bakery on the corner sells fresh bread every morning.",
    "A strong wind blew the leaves across the empty playground.",
    "Engineers tested the bridge carefully before it was opened.",
    "The concert was cancelled after the singer became ill.",
    "Mathematics helps us describe patterns found in nature.",
    "They walked along the beach and collected smooth grey stones.",
    "The doctor recommended more sleep and less coffee.",
    "Volunteers cleaned the park on a sunny Saturday afternoon.",
    "The final chapter of the book explains the whole mystery.",
)


def require_espeak() -> str:
    """The espeak-ng executable, or skip the test with the install hint."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (make system-deps)")
    return exe


def synth_speech(text: str, path: Path, voice: str = "en", rate: int = 160) -> Path:
    """Speak ``text`` with espeak-ng into a 16 kHz mono wav at ``path``."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run([require_espeak(), "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
    write_wav(path, decode_audio(raw))
    raw.unlink()
    return path


def write_wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    """16-bit PCM mono wav."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(pcm.tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono wav as float32."""
    with wave.open(str(path), "rb") as inp:
        return np.frombuffer(inp.readframes(inp.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def tone(freq: float, seconds: float, amplitude: float = 0.3, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, amplitude: float = 0.05, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Steady white noise (seeded)."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(round(seconds * sr))).astype(np.float32)


def trim_silence(samples: np.ndarray, floor_db: float = -45.0, frame: int = 160) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``floor_db`` (dBFS RMS, 10 ms frames)."""
    count = samples.size // frame
    rms = np.sqrt(np.mean(samples[: count * frame].reshape(count, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms) > floor_db)[0]
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


@dataclass(frozen=True)
class SpokenTrack:
    """A wav of known sentences at known times (seconds)."""

    path: Path
    spans: tuple[tuple[float, float], ...]
    duration_s: float


def build_track(
    sentences: tuple[str, ...] | list[str],
    path: Path,
    pauses: list[float],
    lead_s: float = 0.8,
    voice: str = "en",
) -> SpokenTrack:
    """Speak each sentence, trim it, join them with ``pauses`` (cycled); record every span."""
    parts: list[np.ndarray] = [np.zeros(round(lead_s * SR), dtype=np.float32)]
    spans: list[tuple[float, float]] = []
    position = parts[0].size
    for k, text in enumerate(sentences):
        clip = trim_silence(read_wav(synth_speech(text, path.with_name(f"{path.stem}_{k}.wav"), voice=voice)))
        spans.append((position / SR, (position + clip.size) / SR))
        gap = np.zeros(round(pauses[k % len(pauses)] * SR), dtype=np.float32)
        parts += [clip, gap]
        position += clip.size + gap.size
    audio = np.concatenate(parts)
    write_wav(path, audio)
    return SpokenTrack(path, tuple(spans), audio.size / SR)


def convert(src: Path, dst: Path, *args: str) -> Path:
    """Transcode with ffmpeg; the container/codec follows ``dst``'s suffix unless ``args`` say."""
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def piped_wav(src: Path, dst: Path) -> Path:
    """``src`` as ffmpeg writes a WAV to a pipe: it cannot seek back, so its sizes say 0xFFFFFFFF."""
    command = [find_ffmpeg(), "-nostdin", "-v", "error", "-i", str(src), "-f", "wav", "-"]
    piped = subprocess.run(command, check=True, capture_output=True).stdout
    dst.write_bytes(piped)
    return dst


def mux_video(audio: Path, dst: Path, audio_offset_s: float = 0.0, seconds: float | None = None) -> Path:
    """A video (tiny colour frames; H.264+AAC, VP9+Opus for .webm, MPEG-2+MP2 for .mpg) with
    ``audio`` as its track.

    ``audio_offset_s`` makes the audio stream start that late in the container.
    """
    duration = seconds if seconds is not None else len(read_wav(audio)) / SR + audio_offset_s + 0.5
    video = f"color=c=blue:s=64x64:r=10:d={duration:.3f}"
    offset = ["-itsoffset", f"{audio_offset_s:.3f}"] if audio_offset_s else []
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", video, *offset]
    codecs = {
        ".webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus"],
        ".mpg": ["-c:v", "mpeg2video", "-c:a", "mp2"],  # an MPEG program stream (DVD-like)
    }.get(dst.suffix, ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
    cmd += ["-i", str(audio), *codecs, str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def video_only(dst: Path, seconds: float = 2.0) -> Path:
    """An H.264 video with no audio track."""
    video = f"color=c=red:s=64x64:r=10:d={seconds:.3f}"
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", video]
    subprocess.run([*cmd, "-c:v", "libx264", "-preset", "ultrafast", str(dst)], check=True)
    return dst


def truncate(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    """The first ``fraction`` of ``src``'s bytes: a cut download."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def corrupt_middle(src: Path, dst: Path, at: float = 0.35, count: int = 3000, seed: int = 1) -> Path:
    """``src`` with ``count`` random bytes written over it at ``at`` of its length (same size)."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * at)
    data[start : start + count] = (
        np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    )
    dst.write_bytes(bytes(data))
    return dst


def surround_96k(src: Path, dst: Path) -> Path:
    """``src`` as 8-channel (7.1) 96 kHz 24-bit wav."""
    return convert(src, dst, "-af", "aformat=channel_layouts=7.1", "-ar", "96000", "-c:a", "pcm_s24le")


def referencing_texts(ts: Path, m4a: Path) -> dict[str, str]:
    """Files that make ffmpeg open another file: an HLS playlist naming ``ts``, a DASH manifest
    naming ``m4a`` (by ``file://`` URL), an ffconcat list naming ``m4a`` (by its bare name,
    beside it) and an SDP description (RTP on a local port)."""
    return {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:60\n#EXTINF:60,\n{ts}\n#EXT-X-ENDLIST\n",
        "dash": (
            '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" mediaPresentationDuration="PT60S">'
            '<Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000" '
            f'codecs="mp4a.40.2"><BaseURL>{m4a.as_uri()}</BaseURL><SegmentBase/></Representation>'
            "</AdaptationSet></Period></MPD>\n"
        ),
        "ffconcat": f"ffconcat version 1.0\nfile {m4a.name}\n",
        "sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 9 RTP/AVP 0\n",
    }
