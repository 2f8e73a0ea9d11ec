"""A local stand-in for the files of ``clasp-official`` (which live on Hugging Face), random weights.

Laid out as ``--model-dir`` / ``CLASP_MODEL_DIR`` expects and read by the real loading code:

- ``hubert-large-ls960-ft/``: a transformers ``HubertForCTC`` folder with the configuration of
  facebook/hubert-large-ls960-ft (1024 wide, 16 heads, stable layer norm, 32 CTC letters);
- ``LaBSE/``: a sentence-transformers folder like sentence-transformers/LaBSE (BERT 768 wide →
  CLS pooling → 768→768 tanh Dense → Normalize) with a WordPiece tokenizer;
- the torchvision EfficientNet-B7 ``IMAGENET1K_V1`` state dict under its release file name;
- ``CLASP_Concat_Final_Fusion_Encoder.pt``: a pickled concat head written the way the paper's
  notebook wrote it (``tests/unit/model/make_paper_checkpoints.py``), read through the
  restricted unpickler.

``full=True`` gives every backbone its real depth and vocabulary (HuBERT 24 layers, LaBSE 12
layers and 501,153 word pieces: ~3.5 GB on disk). ``full=False`` (the tests) keeps every
tensor shape of the layers it has but only 2 transformer layers per backbone and a small
vocabulary; the widths every interface sees (1024, 1000, 768) are the real ones either way.

    python -m tests.integration.flows.official_standin OUT_DIR [--full]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.unit.pipeline.speech import SENTENCES

HEAD_FILE = "CLASP_Concat_Final_Fusion_Encoder.pt"
LABSE_VOCAB = 501_153
#: Whole-word pieces of the tokenizer: the words the test speech says.
_WORDS = sorted({word.strip(".,").lower() for sentence in SENTENCES for word in sentence.split()})


def _hubert(out: Path, layers: int) -> None:
    from transformers import HubertConfig, HubertForCTC

    config = HubertConfig(
        vocab_size=32, hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
        intermediate_size=4096, feat_extract_norm="layer", feat_extract_activation="gelu",
        do_stable_layer_norm=True, conv_bias=True, architectures=["HubertForCTC"],
    )  # fmt: skip
    HubertForCTC(config).save_pretrained(out)


def _vocab(size: int | None) -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), *_WORDS]
    if size is not None:
        vocab += [f"[unused{i}]" for i in range(size - len(vocab))]
    return vocab


def _labse(out: Path, layers: int, vocab_size: int | None) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from torch import nn
    from transformers import BertConfig, BertModel, BertTokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        bert_dir = Path(tmp)
        vocab = _vocab(vocab_size)
        (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"), do_lower_case=False)
        tokenizer.save_pretrained(bert_dir)
        config = BertConfig(
            vocab_size=len(vocab), hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
        )  # fmt: skip
        BertModel(config, add_pooling_layer=True).save_pretrained(bert_dir)
        transformer = Transformer(str(bert_dir), max_seq_length=256)
        dense = Dense(768, 768, bias=True, activation_function=nn.Tanh())
        modules = [transformer, Pooling(768, pooling_mode="cls"), dense, Normalize()]
        SentenceTransformer(modules=modules).save(str(out))
    _legacy_module_names(out / "modules.json")


def _legacy_module_names(path: Path) -> None:
    """Name the modules as the hub's LaBSE folder does (``sentence_transformers.models.Dense``)."""
    modules = json.loads(path.read_text())
    for module in modules:
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[1]
    path.write_text(json.dumps(modules, indent=2))


def _efficientnet_b7(model_dir: Path) -> None:
    import torch
    from torchvision.models import EfficientNet_B7_Weights, efficientnet_b7

    name = EfficientNet_B7_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    torch.save(efficientnet_b7(weights=None).state_dict(), model_dir / name)


def _head(model_dir: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "unit" / "model" / "make_paper_checkpoints.py"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(script), tmp], check=True, capture_output=True, timeout=300)
        shutil.copy(Path(tmp) / "concat.pt", model_dir / HEAD_FILE)


def build_official_standin(model_dir: Path, *, full: bool = False) -> Path:
    """Write the stand-in into ``model_dir`` (made if missing); returns ``model_dir``."""
    import torch

    torch.manual_seed(0)
    model_dir.mkdir(parents=True, exist_ok=True)
    _hubert(model_dir / "hubert-large-ls960-ft", 24 if full else 2)
    _labse(model_dir / "LaBSE", 12 if full else 2, LABSE_VOCAB if full else None)
    _efficientnet_b7(model_dir)
    _head(model_dir)
    return model_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--full", action="store_true", help="real depths and vocabulary (~3.5 GB)")
    arguments = parser.parse_args()
    print(build_official_standin(arguments.out, full=arguments.full))
