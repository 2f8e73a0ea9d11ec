"""Tiny random backbones for ``tiny-random``: built in memory from configs, seeded, offline.

* speech: a 2-layer ``HubertModel`` (hidden 32) with a layer-norm conv front end (like
  HuBERT-large, so padding invariance holds), the usual 320× downsampling;
* text: a 2-layer ``BertModel`` (hidden 32) with a character-level WordPiece tokenizer built
  in code (lower-cased Latin letters, digits, punctuation; other characters map to [UNK]).

Same seed → same weights, so a saved ``tiny-random`` fusion head reloads onto the same
backbones. Nothing here is meaningful as a model; it exercises the real code paths fast.
"""

from __future__ import annotations

import string
from typing import Any

import torch

from clasp_ingest.model.config import ComponentSpec, Runtime
from clasp_ingest.model.speech import HFSpeechEncoder, SpeechOptions
from clasp_ingest.model.text import HFMeanTextEncoder

__all__ = ["build_tiny_hubert", "build_tiny_text", "char_tokenizer"]

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = string.ascii_lowercase + string.digits + string.punctuation


def char_tokenizer() -> Any:
    """A BERT-style fast tokenizer whose word pieces are single characters."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    pieces = _SPECIALS + list(_CHARS) + [f"##{c}" for c in _CHARS]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _seeded(seed: int, build: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_hubert(spec: ComponentSpec, runtime: Runtime) -> HFSpeechEncoder:
    """Backend ``tiny-hubert``: ``spec.dim`` is the hidden size."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        hidden_size=spec.dim,
        num_hidden_layers=int(spec.options.get("layers", 2)),
        num_attention_heads=int(spec.options.get("heads", 2)),
        intermediate_size=spec.dim * 2,
        conv_dim=(32,) * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    model = _seeded(int(spec.options.get("seed", 0)), lambda: HubertModel(config))
    return HFSpeechEncoder(model, runtime, SpeechOptions(normalize=True, batch_size=runtime.batch_size))


def build_tiny_text(spec: ComponentSpec, runtime: Runtime) -> HFMeanTextEncoder:
    """Backend ``tiny-bert``: ``spec.dim`` is the hidden size."""
    from transformers import BertConfig, BertModel

    tokenizer = char_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.dim,
        num_hidden_layers=int(spec.options.get("layers", 2)),
        num_attention_heads=int(spec.options.get("heads", 2)),
        intermediate_size=spec.dim * 2,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = _seeded(int(spec.options.get("seed", 0)), lambda: BertModel(config, add_pooling_layer=False))
    return HFMeanTextEncoder(model, tokenizer, runtime, max_length=254)
