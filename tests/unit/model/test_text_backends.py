from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.config import ComponentSpec, Runtime
from clasp_ingest.model.text import build_sentence_transformer
from clasp_ingest.model.tiny import char_tokenizer


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT + tokenizer saved as a plain HF folder in a model dir."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("models")
    tok = char_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=48, max_position_embeddings=64)  # fmt: skip
    BertModel(cfg).save_pretrained(root / "tiny-st")
    tok.save_pretrained(root / "tiny-st")
    return root


def test_sentence_transformers_backend_from_model_dir(st_dir: Path) -> None:
    spec = ComponentSpec("sentence-transformers", "someone/tiny-st", 24)
    enc = build_sentence_transformer(spec, Runtime(model_dir=st_dir))
    out = enc.encode(["hello", "a longer sentence here", "hello"])
    assert out.shape == (3, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[2], atol=1e-6)
    batched_vs_single = np.abs(out[1] - enc.encode(["a longer sentence here"])[0]).max()
    assert batched_vs_single <= 1e-4


def test_sentence_transformers_dim_mismatch(st_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="768"):
        build_sentence_transformer(
            ComponentSpec("sentence-transformers", "tiny-st", 768), Runtime(model_dir=st_dir)
        )


def test_sentence_transformers_offline_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match="sentence-transformers/LaBSE"):
        build_sentence_transformer(
            ComponentSpec("sentence-transformers", "sentence-transformers/LaBSE", 768), Runtime()
        )


def test_sentence_transformers_token_limit_is_the_models_own(st_dir: Path) -> None:
    from clasp_ingest.model.base import TokenLimited
    from clasp_ingest.model.query import cut_to_tokens

    enc = build_sentence_transformer(
        ComponentSpec("sentence-transformers", "tiny-st", 24), Runtime(model_dir=st_dir)
    )
    assert isinstance(enc, TokenLimited) and 0 < enc.max_tokens <= 64
    long = "a longer sentence here " * 200
    cut = cut_to_tokens(long, enc.token_count, enc.max_tokens)
    assert enc.token_count(cut) <= enc.max_tokens < enc.token_count(long) and long.startswith(cut)
    # sentence-transformers reads no further than that limit: the longest prefix within it embeds the same
    within = max(n for n in range(len(cut), len(cut) + 40) if enc.token_count(long[:n]) <= enc.max_tokens)
    np.testing.assert_allclose(enc.encode([long])[0], enc.encode([long[:within]])[0], atol=1e-4)
