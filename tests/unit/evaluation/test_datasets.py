"""Real-speech evaluation-set builders: parsing, layouts, manifests, the installed packages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.datasets import (
    POCKETSPHINX_DATA,
    EvalClip,
    audioeval_clips,
    audioeval_samples_dir,
    build_eval_sets,
    main,
    parse_sphinx_transcription,
    pocketsphinx_clips,
    write_manifest,
)
from clasp_ingest.training.manifest import read_manifest, select_split

SR = 16_000


def _wav(path: Path, seconds: float = 0.3, freq: float = 220.0) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path


def _sphinx_tree(root: Path) -> Path:
    folder = root / "librivox"
    lines = ["<s> he was not an ill disposed young man </s> (utt-1)", "", "<s>  two   words </s> (utt-2)"]
    (folder).mkdir(parents=True)
    (folder / "transcription").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _wav(folder / "utt-1.wav")
    _wav(folder / "utt-2.wav", freq=440.0)
    return root


def test_parse_sphinx_transcription(tmp_path: Path) -> None:
    root = _sphinx_tree(tmp_path)
    parsed = parse_sphinx_transcription(root / "librivox" / "transcription")
    assert parsed == {"utt-1": "he was not an ill disposed young man", "utt-2": "two words"}


def test_parse_sphinx_rejects_a_line_without_id(tmp_path: Path) -> None:
    bad = tmp_path / "t"
    bad.write_text("<s> no id here </s>\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t:1"):
        parse_sphinx_transcription(bad)


def test_pocketsphinx_layout_to_manifest(tmp_path: Path) -> None:
    clips = pocketsphinx_clips("librivox", root=_sphinx_tree(tmp_path / "data"))
    assert [c.clip_id for c in clips] == ["librivox/utt-1", "librivox/utt-2"]
    assert all(c.language == "en" and c.audio.is_file() for c in clips)
    rows = select_split(read_manifest(write_manifest(clips, tmp_path / "m.jsonl")), "test")
    assert [r.text for r in rows] == [c.text for c in clips]
    assert [r.audio for r in rows] == [c.audio.resolve() for c in clips]


def test_pocketsphinx_missing_audio_and_missing_package(tmp_path: Path) -> None:
    root = _sphinx_tree(tmp_path / "data")
    (root / "librivox" / "utt-2.wav").unlink()
    with pytest.raises(ConfigError, match="utt-2"):
        pocketsphinx_clips("librivox", root=root)
    with pytest.raises(ConfigError, match="make eval-deps"):
        pocketsphinx_clips("librivox", root=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="subset"):
        pocketsphinx_clips("tidigits", root=root)


def test_audioeval_layout_and_copies(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    _wav(samples / "fr" / "bonjour.wav")
    (samples / "fr" / "bonjour.txt").write_text("Bonjour  le monde.\n", encoding="utf-8")
    _wav(samples / "en" / "hello.wav")
    (samples / "en" / "hello.txt").write_text("Hello world.", encoding="utf-8")
    _wav(samples / "en" / "orphan.wav")  # no reference text: skipped
    clips = audioeval_clips(samples)
    assert [(c.clip_id, c.language, c.text) for c in clips] == [
        ("en/hello", "en", "Hello world."),
        ("fr/bonjour", "fr", "Bonjour le monde."),
    ]
    manifest = write_manifest(clips, tmp_path / "out" / "a.jsonl", copy_to=tmp_path / "out" / "audio")
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert [r["audio"] for r in rows] == [
        str((tmp_path / "out" / "audio" / "en" / "hello.wav").resolve()),
        str((tmp_path / "out" / "audio" / "fr" / "bonjour.wav").resolve()),
    ]
    assert {r["split"] for r in rows} == {"test"}
    assert (tmp_path / "out" / "audio" / "fr" / "bonjour.wav").read_bytes() == (
        samples / "fr" / "bonjour.wav"
    ).read_bytes()


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reinstall"):
        audioeval_clips(tmp_path)
    with pytest.raises(ConfigError, match="no clips"):
        write_manifest([], tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="empty reference"):
        EvalClip(audio=tmp_path / "a.wav", text="  ", language="en", clip_id="a")
    with pytest.raises(ConfigError, match="unknown evaluation set"):
        build_eval_sets(tmp_path, ["nope"])


needs_sphinx = pytest.mark.skipif(
    not (POCKETSPHINX_DATA / "librivox").is_dir(), reason="pocketsphinx-testdata absent (make eval-deps)"
)


def _has_audioeval() -> bool:
    try:
        audioeval_samples_dir()
    except ConfigError:
        return False
    return True


needs_audioeval = pytest.mark.skipif(not _has_audioeval(), reason="pytest-audioeval absent (make eval-deps)")


@needs_sphinx
def test_installed_librivox_utterances() -> None:
    import soundfile as sf

    clips = pocketsphinx_clips("librivox")
    assert len(clips) == 5
    assert clips[1].text == "he was not an ill disposed young man"
    for clip in clips:
        info = sf.info(clip.audio)
        assert info.samplerate == SR and info.channels == 1 and 2.0 < info.duration < 10.0


@needs_audioeval
def test_installed_audioeval_clips() -> None:
    clips = audioeval_clips()
    assert len(clips) == 27
    assert sorted({c.language for c in clips}) == ["en", "es", "fr", "hi", "it", "ja", "pl", "pt", "zh"]
    assert {c.language: c.text for c in clips if c.clip_id.endswith("bonjour_monde")} == {
        "fr": "Bonjour le monde."
    }


@needs_sphinx
@needs_audioeval
def test_module_entry_writes_every_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--strict"]) == 0
    out = capsys.readouterr().out
    for name, n in (("librivox", 5), ("sphinx-cards", 5), ("audioeval", 27)):
        assert f"{name}\t{n} clips" in out
        assert len(read_manifest(tmp_path / f"{name}.jsonl")) == n


def test_festvox_ru_strips_stress_marks_and_splits_by_sentence(tmp_path: Path) -> None:
    from clasp_ingest.evaluation.datasets import festvox_ru_clips

    lines = [f'( ru_{i:04d} "Она завела, прядь вол+ос за ухо {i}." )' for i in range(1, 8)]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "txt.done.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for i in range(1, 7):  # ru_0007 has no recording: left out
        _wav(tmp_path / "wav" / f"ru_{i:04d}.wav")
    clips = festvox_ru_clips(tmp_path)
    assert [c.clip_id for c in clips] == [f"ru/ru_{i:04d}" for i in range(1, 7)]
    assert clips[0].text == "Она завела, прядь волос за ухо 1."
    assert [c.split for c in clips] == ["test", "val", "train", "train", "train", "test"]
    assert {c.language for c in clips} == {"ru"}


def _fillets_tree(root: Path) -> Path:
    script = root / "script" / "airplane"
    script.mkdir(parents=True)
    lua = """
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Co je to za divnou lo\\"d?")

dialogId("let-v-vrak0", "font_big", "This is the wreck of the airplane.")
dialogStr("To je vrak dopravn\u00edho letadla.")

dialogId("let-v-vrak1", "font_big", "This is the wreck of the airplane.")
dialogStr("To je jin\u00fd vrak.")

dialogId("let-m-ano", "font_small", "Yes.")
dialogStr("Ano.")

dialogId("let-x-nic", "font_big", "Nobody recorded this line at all.")
dialogStr("Nikdo to nenahr\u00e1l.")
"""
    (script / "dialogs_cs.lua").write_text(lua, encoding="utf-8")
    for name in ("let-m-divna", "let-v-vrak0", "let-v-vrak1", "let-m-ano"):
        _wav(root / "sound" / "airplane" / "cs" / f"{name}.ogg")
    return root


def test_fillets_pairs_lines_with_english_and_splits_by_actor(tmp_path: Path) -> None:
    from clasp_ingest.evaluation.datasets import fillets_clips

    root = _fillets_tree(tmp_path)
    own = fillets_clips("cs", root=root)
    # "Yes." is too short, vrak1 repeats vrak0's English, let-x-nic has no recording
    assert [c.clip_id for c in own] == ["cs/airplane/let-m-divna", "cs/airplane/let-v-vrak0"]
    assert own[0].text == 'Co je to za divnou lo"d?' and own[0].language == "cs"
    assert own[0].split == "test"  # the small fish's actor is never trained on
    assert own[1].split in ("train", "val")
    english = fillets_clips("cs", "en", root=root)
    assert [c.text for c in english] == [
        "What kind of strange ship is that?",
        "This is the wreck of the airplane.",
    ]
    assert [c.language for c in english] == ["en", "en"]
    assert [c.split for c in english] == [c.split for c in own]


def test_fillets_refuses_other_languages_and_missing_data(tmp_path: Path) -> None:
    from clasp_ingest.evaluation.datasets import fillets_clips

    with pytest.raises(ConfigError, match="'cs' or 'nl'"):
        fillets_clips("de", root=tmp_path)
    with pytest.raises(ConfigError, match="fillets-ng-data"):
        fillets_clips("nl", root=tmp_path)


def test_write_manifest_keeps_each_clips_split(tmp_path: Path) -> None:
    clips = [
        EvalClip(audio=_wav(tmp_path / "a.wav"), text="a b", language="en", clip_id="a", split="train"),
        EvalClip(audio=_wav(tmp_path / "b.wav"), text="c d", language="en", clip_id="b"),
    ]
    path = write_manifest(clips, tmp_path / "m.jsonl")
    assert [r.split for r in read_manifest(path)] == ["train", "test"]


def test_fillets_queries_in_a_third_language_use_the_games_translation(tmp_path: Path) -> None:
    from clasp_ingest.evaluation.datasets import fillets_clips

    root = _fillets_tree(tmp_path)
    german = """
dialogId("let-v-vrak0", "font_big", "This is the wreck of the airplane.")
dialogStr("Das ist das Wrack des Flugzeugs.")
"""
    (root / "script" / "airplane" / "dialogs_de.lua").write_text(german, encoding="utf-8")
    clips = fillets_clips("cs", "de", root=root)  # let-m-divna has no German line: left out
    assert [(c.clip_id, c.text, c.language) for c in clips] == [
        ("cs/airplane/let-v-vrak0", "Das ist das Wrack des Flugzeugs.", "de")
    ]


def test_fillets_leaves_out_recordings_without_audio(tmp_path: Path) -> None:
    from clasp_ingest.evaluation.datasets import fillets_clips

    root = _fillets_tree(tmp_path)
    (root / "sound" / "airplane" / "cs" / "let-v-vrak0.ogg").write_bytes(b"OggS\x00not really")
    kept = [c.clip_id for c in fillets_clips("cs", root=root)]
    assert kept == ["cs/airplane/let-m-divna", "cs/airplane/let-v-vrak1"]  # vrak1's English is free now
