"""Vector calibration of a CLASP model, in numpy: language directions, centring, query bank.

These act on the head's unit outputs (audio side) and the text encoder's unit outputs (text
side) after the networks ran, so a query needs only the text encoder and this module: no
torch (``clasp-ingest search`` stays fast). Stored in ``fusion.safetensors`` under
``centering.*``; :meth:`Centering.tensors` and :meth:`QueryBank.from_arrays` convert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch

    from clasp_ingest.model.config import ModelConfig

__all__ = [
    "CENTERING_PREFIX",
    "Centering",
    "QueryBank",
    "centering_from",
    "check_finite",
    "check_query_bank",
    "language_basis",
    "non_finite_message",
    "project_out",
    "unit_rows",
]

CENTERING_PREFIX = "centering."


@dataclass(frozen=True)
class QueryBank:
    """Hubness correction from a bank of training captions, carried in one extra coordinate.

    Some clips lie close to many queries ("hubs") and crowd the top of every result list,
    most of all for queries in another language than the speech. As in CSLS (Conneau et al.,
    2018) and query-bank normalisation (Bogolin et al., 2022), a clip's hubness ``r`` is the
    mean cosine between it and its ``k`` nearest captions of ``texts`` (the model's own
    centred vectors of training captions, ``(n, dim)`` unit rows), and its score against
    every query is lowered by ``penalty = beta × (r − mean)`` (``mean``: the average ``r``
    of training clips, so scores keep their scale).

    Nearest-neighbour search can subtract a per-clip value only inside the vectors, so the
    model's vectors gain a last coordinate: ``−penalty / scale`` on the audio side and
    ``scale`` on the text side, both rows then L2-normalised. A query · clip dot product is
    ``(cos − penalty) / (√(1 + scale²) · √(1 + (penalty / scale)²))``: the corrected score
    times a constant per query and a per-clip factor within 0.4 % of 1 while ``|penalty| ≤
    0.04`` (``scale`` 0.5). Stored in ``fusion.safetensors`` as ``centering.bank.texts``
    (float16) and ``centering.bank.params`` (``k, beta, mean, scale``); fitted by
    ``python -m clasp_ingest.training.querybank``.
    """

    texts: np.ndarray
    k: int
    beta: float
    mean: float
    scale: float = 0.5

    def __post_init__(self) -> None:
        if self.texts.ndim != 2 or not 1 <= self.k <= len(self.texts):
            raise ConfigError(
                f"query bank: k={self.k} needs 1..{len(self.texts)} bank rows (texts {self.texts.shape})"
            )
        if not all(math.isfinite(v) for v in (self.beta, self.mean, self.scale)):  # NaN < 0 is False
            raise ConfigError(
                f"query bank: beta, mean and scale must be finite, got {self.beta}, {self.mean}, {self.scale}"
            )
        if self.beta < 0 or self.scale <= 0:
            raise ConfigError(f"query bank: beta must be >= 0 and scale > 0, got {self.beta}, {self.scale}")

    def hubness(self, audio: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """``r`` of each unit row of ``audio``: mean cosine of its ``k`` nearest bank captions."""
        audio = np.asarray(audio, np.float32)
        texts = self.texts.astype(np.float32, copy=False)
        out = np.empty(len(audio), np.float32)
        for start in range(0, len(audio), chunk):
            sims = audio[start : start + chunk] @ texts.T
            out[start : start + chunk] = np.partition(sims, -self.k, axis=1)[:, -self.k :].mean(1)
        return out

    def penalty(self, audio: np.ndarray) -> np.ndarray:
        """``beta × (r − mean)`` of each unit row of ``audio``."""
        return (self.beta * (self.hubness(audio) - self.mean)).astype(np.float32)

    def extend(self, x: np.ndarray, side: str) -> np.ndarray:
        """Unit rows of ``x`` (centred model vectors) with the correction coordinate appended."""
        n = len(x)
        last = -self.penalty(x) / self.scale if side == "audio" else np.full(n, self.scale, np.float32)
        return unit_rows(np.concatenate([x, last[:, None].astype(np.float32)], axis=1))

    def tensors(self) -> dict[str, torch.Tensor]:
        """``bank.texts`` (float16) and ``bank.params`` (``k, beta, mean, scale``)."""
        import torch

        params = np.array([self.k, self.beta, self.mean, self.scale], np.float32)
        return {
            "bank.texts": torch.from_numpy(np.array(self.texts, np.float16, copy=True)),
            "bank.params": torch.from_numpy(params),
        }

    @classmethod
    def from_arrays(cls, texts: np.ndarray, params: np.ndarray) -> QueryBank:
        """From the stored ``bank.texts`` and ``bank.params`` arrays."""
        k, beta, mean, scale = (float(v) for v in np.asarray(params, np.float32).tolist())
        return cls(np.asarray(texts, np.float32), int(k), beta, mean, scale)


@dataclass(frozen=True)
class Centering:
    """Mean unit vectors of each side over the training pairs, subtracted before the final L2 norm.

    Centring removes the direction every embedding shares (the text encoder's anisotropy),
    which helps queries in another language than the speech. Stored beside the head in
    ``fusion.safetensors`` as ``centering.audio`` / ``centering.text``. A ``strength`` below 1
    stores the means scaled by it (partial centring: a trade between same-language and
    cross-lingual retrieval, to be chosen on validation data).

    ``basis`` (optional, ``centering.basis``, shape ``(k, dim)``, orthonormal rows): directions
    that separate languages (:func:`language_basis`), projected out of both sides before the
    means are subtracted. Without it a query in German prefers German speech over the English
    clip that says what it asks (the text encoder's language identity, which the head learns
    to reproduce); a head trained on targets with these directions removed
    (``clasp-ingest train --language-dims``) does not carry it.
    """

    audio: np.ndarray
    text: np.ndarray
    basis: np.ndarray | None = None
    bank: QueryBank | None = None

    @property
    def extra_dims(self) -> int:
        """Coordinates added to the model's vectors (1 with a :class:`QueryBank`)."""
        return 0 if self.bank is None else 1

    def query_sample(self) -> np.ndarray | None:
        """The query bank's captions as the model's query vectors (bank coordinate included),
        or None without a bank: a sample of what queries look like, for the store's
        query-aware graph (:class:`clasp_ingest.store.metric.QueryMetric`)."""
        if self.bank is None:
            return None
        return self.bank.extend(np.asarray(self.bank.texts, np.float32), "text")

    @staticmethod
    def check_strength(strength: float) -> None:
        """Raise unless ``0 < strength <= 1`` (callers check before long work, ``fit`` again)."""
        if not 0.0 < strength <= 1.0:
            raise ConfigError(f"centring strength must be in (0, 1], got {strength}")

    @classmethod
    def fit(
        cls, audio: np.ndarray, text: np.ndarray, strength: float = 1.0, basis: np.ndarray | None = None
    ) -> Centering:
        """``strength`` × the means of the unit rows of ``audio`` (head outputs) and ``text``.

        With ``basis`` the rows are projected first, and the means are those of the projections.
        """
        cls.check_strength(strength)
        return cls(
            strength * project_out(np.asarray(audio, np.float32), basis).mean(0),
            strength * project_out(np.asarray(text, np.float32), basis).mean(0),
            None if basis is None else np.asarray(basis, np.float32),
        )

    @classmethod
    def projection_only(cls, basis: np.ndarray) -> Centering:
        """Remove ``basis``'s directions but subtract no means (``--language-dims`` without ``--center``)."""
        zeros = np.zeros(basis.shape[1], np.float32)
        return cls(zeros, zeros.copy(), np.asarray(basis, np.float32))

    def apply(self, x: np.ndarray, side: str) -> np.ndarray:
        """Unit rows of ``x`` (``side`` ``"audio"`` or ``"text"``): projected, centred, unit,
        and with the query bank's coordinate appended when there is one."""
        out = _centred(project_out(x, self.basis), self.audio if side == "audio" else self.text)
        return out if self.bank is None else self.bank.extend(out, side)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The ``centering.*`` tensors to store beside the head."""
        import torch

        arrays = {"audio": self.audio, "text": self.text, "basis": self.basis}
        # copies: safetensors refuses tensors that share memory (e.g. one zero vector twice)
        out = {
            CENTERING_PREFIX + name: torch.from_numpy(np.array(value, np.float32, copy=True))
            for name, value in arrays.items()
            if value is not None
        }
        if self.bank is not None:
            out.update({CENTERING_PREFIX + name: value for name, value in self.bank.tensors().items()})
        return out


def language_basis(text: np.ndarray, languages: Sequence[str | None], dims: int) -> np.ndarray:
    """The ``dims`` directions along which the languages' mean unit text vectors differ most.

    ``text``: text-encoder outputs of the training captions; ``languages``: each row's language.
    Returns ``(dims, dim)`` orthonormal rows (the top right singular vectors of the language
    means, less their average). ``dims`` can be at most the number of languages less one.
    """
    if len(languages) != len(text):
        raise ConfigError(f"{len(text)} text rows but {len(languages)} languages")
    if any(lang is None for lang in languages):
        raise ConfigError("every training row needs a 'language' to find language directions")
    names = sorted({str(lang) for lang in languages})
    if not 1 <= dims <= len(names) - 1:
        raise ConfigError(
            f"language dims must be between 1 and the number of languages less one "
            f"({len(names) - 1} for {', '.join(names)}), got {dims}"
        )
    unit = unit_rows(np.asarray(text, np.float32))
    labels = np.asarray([str(lang) for lang in languages])
    means = np.stack([unit[labels == name].mean(0) for name in names])
    _, _, vt = np.linalg.svd(means - means.mean(0), full_matrices=False)
    return np.ascontiguousarray(vt[:dims], dtype=np.float32)


def project_out(x: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Unit rows of ``x`` with the span of ``basis``'s (orthonormal) rows removed."""
    unit = unit_rows(np.asarray(x, np.float32))
    if basis is None:
        return unit
    return unit_rows(unit - (unit @ basis.T) @ basis)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32)."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


def _centred(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return unit_rows(x - mean.astype(np.float32))


def centering_from(extra: Mapping[str, np.ndarray], dim: int, path: Path | str) -> Centering:
    """The :class:`Centering` of a weights file's ``centering.*`` arrays (prefix removed), checked."""
    basis = extra.get("basis")
    texts, params = extra.get("bank.texts"), extra.get("bank.params")
    if (
        not {"audio", "text"} <= set(extra) <= {"audio", "text", "basis", "bank.texts", "bank.params"}
        or extra["audio"].shape != (dim,)
        or extra["text"].shape != (dim,)
        or (basis is not None and (basis.ndim != 2 or basis.shape[1] != dim or not 0 < basis.shape[0] < dim))
        or (texts is None) != (params is None)
        or (texts is not None and (texts.ndim != 2 or texts.shape[1] != dim))
        or (params is not None and params.shape != (4,))
    ):
        raise ModelLoadError(
            f"fusion weights {str(path)!r}: centering tensors {sorted(extra)} do not fit a {dim}-d "
            f"model; expected centering.audio and centering.text of ({dim},) and, optionally, "
            f"centering.basis of (k, {dim}) and centering.bank.texts (n, {dim}) with "
            "centering.bank.params (4,)"
        )
    check_finite({CENTERING_PREFIX + k: v for k, v in extra.items()}, path)
    bank = None
    if texts is not None and params is not None:
        try:
            bank = QueryBank.from_arrays(texts, params)
        except ConfigError as exc:
            raise ModelLoadError(f"fusion weights {str(path)!r}: {exc}") from exc
    return Centering(
        np.asarray(extra["audio"], np.float32),
        np.asarray(extra["text"], np.float32),
        None if basis is None else np.asarray(basis, np.float32),
        bank,
    )


def non_finite_message(path: Path | str, name: str, count: int) -> str:
    """What :class:`ModelLoadError` says of a weights file's tensor with NaN or infinite values."""
    return (
        f"fusion weights {str(path)!r}: tensor {name!r} holds {count} non-finite values (NaN or "
        "infinity), which make every vector or query NaN; the file is damaged or its training "
        "diverged: copy the model folder again, or reinstall the package that ships it"
    )


def check_finite(arrays: Mapping[str, np.ndarray], path: Path | str) -> None:
    """Raise :class:`ModelLoadError` naming ``path`` and the first array of ``arrays`` (by its
    stored name) that holds NaN or infinity: refused at load, not met as NaN vectors in every
    item, or a NaN query that silently matches nothing (a NaN in ``centering.text``)."""
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and (bad := int(value.size - np.isfinite(value).sum())):
            raise ModelLoadError(non_finite_message(path, name, bad))


def check_query_bank(config: ModelConfig, centering: Centering | None, weights: Path | str | None) -> None:
    """Raise unless the weights carry a query bank exactly when the config says so."""
    has_bank = centering is not None and centering.bank is not None
    if has_bank != config.query_bank:
        raise ModelLoadError(
            f"fusion weights {str(weights)!r} {'carry' if has_bank else 'lack'} a query bank but the "
            f"config of {config.model_id!r} says query_bank={config.query_bank}; use the "
            "config.json saved with these weights"
        )
