"""The model cache's CTranslate2 copies of Whisper (fine-tuned top layers written in, or the
encoder cut to its first layers) damaged after they were written: a file cut short or removed
(a crash, a full disk, a power loss) is written again, as whisper-base's own copy is; a copy
left by a run cut short does not count as done; and a copy that still cannot be loaded names
its cache folder and says that deleting it rebuilds it (tester 6 of session 30: every ingest
failed, and kept failing, with "try device='cpu'" on a run already on the CPU)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.assets import folder_stamp_matches
from clasp_ingest.model.ct2_format import read_ct2_model
from clasp_ingest.model.whisper_ct2 import (
    WhisperCT2Options,
    WhisperCT2SpeechEncoder,
    patched_whisper_dir,
    truncated_whisper_dir,
)


def _top_layers(tiny_whisper_ct2: Path, out: Path) -> Path:
    """A top-layers file: the tiny model's own last layer, moved a little (a fine-tuned one)."""
    variables = read_ct2_model(tiny_whisper_ct2, keep=lambda n: n.startswith("encoder/layer_1/")).variables
    save_file({k: (v.astype(np.float32) + 0.01) for k, v in variables.items()}, str(out))
    return out


@pytest.fixture(params=["top", "truncated"])
def make_copy(request: pytest.FixtureRequest, tiny_whisper_ct2: Path, tmp_path: Path) -> Callable[[], Path]:
    if request.param == "top":
        top = _top_layers(tiny_whisper_ct2, tmp_path / "top.safetensors")
        return lambda: patched_whisper_dir(tiny_whisper_ct2, top, tmp_path / "cache")
    return lambda: truncated_whisper_dir(tiny_whisper_ct2, 1, tmp_path / "cache")


def _loads(folder: Path) -> np.ndarray:
    options = WhisperCT2Options(window="trim")
    enc = WhisperCT2SpeechEncoder(folder, compute_type="float32", options=options)
    return enc.encode([np.sin(np.arange(8000, dtype=np.float32) / 9)])


@pytest.mark.parametrize("damage", ["cut model.bin", "empty model.bin", "no config.json", "cut vocabulary"])
def test_a_damaged_copy_is_written_again(make_copy: Callable[[], Path], damage: str) -> None:
    copy = make_copy()
    want = _loads(copy)
    assert folder_stamp_matches(copy)
    if damage == "no config.json":
        (copy / "config.json").unlink()
    else:
        path = copy / ("vocabulary.json" if damage == "cut vocabulary" else "model.bin")
        os.truncate(path, 0 if damage == "empty model.bin" else path.stat().st_size // 2)
    assert not folder_stamp_matches(copy)
    assert make_copy() == copy
    assert folder_stamp_matches(copy)
    np.testing.assert_array_equal(_loads(copy), want)
    assert [p.name for p in copy.parent.iterdir() if p.name.startswith(".")] == []  # nothing left over


def test_a_copy_without_a_stamp_does_not_count_as_done(make_copy: Callable[[], Path]) -> None:
    """What a run cut short between writing the files and stamping them would leave (or an older
    version of this package): a model.bin of the right name is not enough."""
    copy = make_copy()
    want = _loads(copy)
    (copy / ".verified").unlink()
    os.truncate(copy / "model.bin", 100)
    assert make_copy() == copy
    np.testing.assert_array_equal(_loads(copy), want)


def test_a_copy_that_still_fails_to_load_names_its_folder_and_the_remedy(
    make_copy: Callable[[], Path],
) -> None:
    """Damage the stamp cannot see (size and mtime kept): CTranslate2's own error, with the
    folder named and the advice to delete it, not a device the run already uses."""
    copy = make_copy()
    config = copy / "config.json"
    st = config.stat()
    config.write_bytes(b"\xff" * st.st_size)
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert make_copy() == copy  # the stamp still matches
    with pytest.raises(ModelLoadError) as raised:
        WhisperCT2SpeechEncoder(copy, device="cpu", compute_type="float32")
    said = str(raised.value)
    # the whole remedy: a run on the CPU in float32 is not told to try either
    assert said.endswith(f"; it is a copy in the model cache: delete the folder {str(copy)!r} and the next "
                         "run writes it again"), said  # fmt: skip


def test_a_folder_of_ones_own_is_not_called_a_cache_copy(tiny_whisper_ct2: Path, tmp_path: Path) -> None:
    import shutil

    mine = Path(shutil.copytree(tiny_whisper_ct2, tmp_path / "mine"))
    os.truncate(mine / "model.bin", 10)
    with pytest.raises(ModelLoadError) as raised:
        WhisperCT2SpeechEncoder(mine, device="cpu", compute_type="int8")
    said = str(raised.value)
    assert "model cache" not in said and said.endswith("; try compute_type='float32'")
