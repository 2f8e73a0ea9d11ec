"""Fixtures for the clasp-mini backbones: a tiny random Whisper in CTranslate2 format, speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.pipeline.speech import speak_samples

SR = 16_000


@pytest.fixture(scope="session")
def tiny_whisper_ct2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random Whisper converted with CTranslate2's real converter (float32)."""
    import ctranslate2
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("tiny_whisper")
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    WhisperForConditionalGeneration(config).eval().save_pretrained(root / "hf")
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(60)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(root / "hf")
    out = ctranslate2.converters.TransformersConverter(str(root / "hf")).convert(str(root / "ct2"))
    return Path(out)


@pytest.fixture(scope="session")
def tiny_whisper_hf(tiny_whisper_ct2: Path) -> object:
    """The same random weights as a transformers model (reference for the CTranslate2 output)."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(tiny_whisper_ct2.parent / "hf").eval()


def espeak(text: str, voice: str = "en", tmp: Path | None = None) -> np.ndarray:
    """16 kHz mono float32 speech from espeak-ng (resampled by sox)."""
    assert tmp is not None
    return speak_samples(text, voice, tmp)


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    tmp = tmp_path_factory.mktemp("speech")
    texts = ["The weather is lovely today.", "Where is the railway station, please?"]
    return [espeak(t, "en", tmp) for t in texts]
