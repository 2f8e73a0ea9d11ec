"""Read CTranslate2's ``model.bin`` into numpy arrays (CTranslate2's own API exposes no weights).

The layout, as ``ctranslate2/specs/model_spec.py`` writes it (binary version 6, little-endian):
``u32`` version, string spec name, ``u32`` spec revision, ``u32`` variable count; per variable a
string name, ``u8`` rank, rank x ``u32`` dims, ``u8`` dtype id, ``u32`` byte count and the raw
bytes; then ``u32`` alias count and (alias, target) string pairs. A string is a ``u16`` length
that counts a trailing NUL, the UTF-8 bytes and the NUL. Variables are sorted by name; a quantised
weight ``x/weight`` has its scales in ``x/weight_scale`` (int8: one per output row, int16: one).
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

import numpy as np

from clasp_ingest.errors import ModelLoadError

__all__ = [
    "BINARY_VERSION",
    "INT7_LEVELS",
    "CT2Model",
    "dequantize",
    "encoder_layer_count",
    "encoder_layers_below",
    "is_matrix_weight",
    "patch_ct2_model",
    "quantize_ct2_weights",
    "read_ct2_model",
]

#: The one format version this reader knows (``CURRENT_BINARY_VERSION`` of ctranslate2 4.x).
BINARY_VERSION = 6

# Type ids in the order of CTranslate2's DataType enum; bfloat16 is read as its raw 16 bits.
_DTYPES: tuple[tuple[str, np.dtype], ...] = (
    ("float32", np.dtype("<f4")),
    ("int8", np.dtype("i1")),
    ("int16", np.dtype("<i2")),
    ("int32", np.dtype("<i4")),
    ("float16", np.dtype("<f2")),
    ("bfloat16", np.dtype("<u2")),
)
_BFLOAT16 = 5


@dataclass(frozen=True)
class CT2Model:
    """The variables of one ``model.bin`` (aliases resolved), keyed by their ``/``-joined names."""

    path: Path
    spec: str
    revision: int
    variables: Mapping[str, np.ndarray]

    def float32(self, name: str) -> np.ndarray:
        """Variable ``name`` as float32, dequantised with ``<name>_scale`` when it has one."""
        value = self.variables.get(name)
        if value is None:
            raise ModelLoadError(f"{self.path} has no variable {name!r}; is it another kind of {self.spec}?")
        if f"{name}_zero" in self.variables:
            raise ModelLoadError(
                f"{self.path}: {name!r} is pre-quantised with zero points (AWQ); re-convert the model "
                "without --quantization awq"
            )
        scale = self.variables.get(f"{name}_scale")
        return value.astype(np.float32) if scale is None else dequantize(value, scale)


def dequantize(value: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """CTranslate2 stores ``round(w * scale)``: a scalar scale or one per leading-axis row."""
    scale = np.asarray(scale, dtype=np.float32)
    if scale.ndim == 1:
        scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
    return value.astype(np.float32) / scale


class _Reader:
    """Little-endian fields of an open ``model.bin``; a short read is a truncated file."""

    def __init__(self, stream: BufferedReader, path: Path) -> None:
        self.stream = stream
        self.path = path

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise ModelLoadError(f"{self.path} is truncated; re-join or re-convert the model")
        return data

    def uint(self, fmt: str) -> int:
        return int(struct.unpack(f"<{fmt}", self.read(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        return self.read(self.uint("H"))[:-1].decode("utf-8")

    def skip(self, n: int) -> None:
        self.stream.seek(n, 1)


def _array(raw: bytes | bytearray, shape: tuple[int, ...], type_id: int) -> np.ndarray:
    value = np.frombuffer(raw, dtype=_DTYPES[type_id][1]).reshape(shape)
    if type_id == _BFLOAT16:
        return (value.astype(np.uint32) << 16).view(np.float32)
    return value


@dataclass(frozen=True)
class _Entry:
    """Where one variable's bytes lie in the file."""

    shape: tuple[int, ...]
    type_id: int
    offset: int
    n_bytes: int


def _entry(r: _Reader) -> tuple[str, _Entry]:
    """One variable's header; its bytes are skipped (read later if wanted)."""
    name = r.string()
    shape = tuple(r.uint("I") for _ in range(r.uint("B")))
    type_id, n_bytes = r.uint("B"), r.uint("I")
    if type_id >= len(_DTYPES):
        raise ModelLoadError(f"{r.path}: variable {name!r} has unknown dtype id {type_id}")
    if n_bytes != int(np.prod(shape, dtype=np.int64)) * _DTYPES[type_id][1].itemsize:
        raise ModelLoadError(f"{r.path}: variable {name!r} holds {n_bytes} bytes, not a {shape} array")
    offset = r.stream.tell()
    r.skip(n_bytes)
    return name, _Entry(shape, type_id, offset, n_bytes)


def _load(r: _Reader, entry: _Entry) -> np.ndarray:
    r.stream.seek(entry.offset)
    raw = bytearray(entry.n_bytes)  # writable, so torch.from_numpy needs no copy
    if r.stream.readinto(raw) != entry.n_bytes:
        raise ModelLoadError(f"{r.path} is truncated; re-join or re-convert the model")
    return _array(raw, entry.shape, entry.type_id)


def _version(r: _Reader) -> int:
    version = r.uint("I")
    if version != BINARY_VERSION:
        raise ModelLoadError(
            f"{r.path} is CTranslate2 binary format version {version}; this reader knows version "
            f"{BINARY_VERSION} only; re-convert it with ct2-transformers-converter from ctranslate2 4.x"
        )
    return version


def _alias(r: _Reader) -> tuple[str, str]:
    return r.string(), r.string()


def read_ct2_model(model_dir: Path, keep: Callable[[str], bool] = lambda name: True) -> CT2Model:
    """The variables of ``model_dir/model.bin`` whose name ``keep`` accepts (others are skipped).

    An alias (a variable equal to an earlier one, stored once) may point anywhere: in a model with
    zero biases, ``encoder/conv1/bias`` can be an alias of a decoder bias, which is then read too.
    """
    path = Path(model_dir) / "model.bin"
    if not path.is_file():
        raise ModelLoadError(
            f"{model_dir} is not a CTranslate2 model (no model.bin); use "
            "clasp_ingest.model.assets.whisper_base_ct2_dir() or convert one with ct2-transformers-converter"
        )
    spec, revision, index, all_aliases = _index(path)
    aliases = {alias: target for alias, target in all_aliases.items() if keep(alias)}
    wanted = {name for name in index if keep(name)} | {t for t in aliases.values() if t in index}
    with path.open("rb") as stream:
        r = _Reader(stream, path)
        loaded = {name: _load(r, index[name]) for name in sorted(wanted, key=lambda n: index[n].offset)}
    variables = {name: loaded[name] for name in index if keep(name)}
    variables |= {alias: loaded[target] for alias, target in aliases.items() if target in loaded}
    return CT2Model(path, spec, revision, variables)


def _index(path: Path) -> tuple[str, int, dict[str, _Entry], dict[str, str]]:
    """Spec name, revision, where each variable's bytes lie in ``path`` (a ``model.bin``), aliases."""
    with path.open("rb") as stream:
        r = _Reader(stream, path)
        _version(r)
        spec, revision = r.string(), r.uint("I")
        index = dict(_entry(r) for _ in range(r.uint("I")))
        aliases = dict(_alias(r) for _ in range(r.uint("I")))
    return spec, revision, index, aliases


def _stored(name: str, value: np.ndarray, entry: _Entry, path: Path) -> bytes:
    """``value`` in ``entry``'s dtype (a float type; a quantised weight would need new scales)."""
    kind, dtype = _DTYPES[entry.type_id]
    if tuple(value.shape) != entry.shape:
        raise ModelLoadError(f"{path}: {name!r} is {entry.shape}, the replacement {tuple(value.shape)}")
    if kind not in ("float32", "float16", "bfloat16"):
        raise ModelLoadError(
            f"{path}: {name!r} is stored as {kind}; patching needs a float model (convert it with "
            "--quantization float16 or none)"
        )
    value = np.ascontiguousarray(value, dtype=np.float32)
    if entry.type_id == _BFLOAT16:
        bits = value.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return rounded.astype("<u2").tobytes()
    return value.astype(dtype).tobytes()


def _string_bytes(text: str) -> bytes:
    data = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(data)) + data


def patch_ct2_model(
    source_dir: Path,
    out_dir: Path,
    replacements: Mapping[str, np.ndarray],
    *,
    drop: Callable[[str], bool] | None = None,
) -> Path:
    """Copy the CTranslate2 model in ``source_dir`` to ``out_dir`` with some variables replaced
    (and those for which ``drop(name)`` is true left out).

    Each replacement must have the variable's shape and is stored in the variable's own float
    dtype. A replaced alias gets its own bytes; aliases of a replaced variable keep the old value
    (they become variables of their own). Other files of the folder are copied. The copy is
    written to a temporary folder and renamed, so ``out_dir`` is whole or absent.
    """

    def changes(src: Path, entries: Mapping[str, _Entry], reader: _Reader) -> dict[str, _Bytes]:
        new: dict[str, _Bytes] = {}
        for name, value in replacements.items():
            if name not in entries:
                raise ModelLoadError(f"{src}: cannot replace {name!r}: it does not exist in this model")
            entry = entries[name]
            new[name] = _Bytes(entry.shape, entry.type_id, _stored(name, value, entry, src))
        return new

    return _rewrite(Path(source_dir), Path(out_dir), changes, drop or (lambda name: False))


#: The largest int8 weight :func:`quantize_ct2_weights` stores: 63, so that a product of a u8
#: activation (0-255, as CTranslate2's oneDNN and MKL GEMMs shift int8 activations) and a weight,
#: added to its neighbour's, stays inside int16 (2 x 255 x 63 = 32,130 < 32,767).
INT7_LEVELS = 63


def is_matrix_weight(name: str, shape: tuple[int, ...]) -> bool:
    """A dense layer's weight matrix (what CTranslate2 quantises for an int8 compute type)."""
    return name.endswith("/weight") and len(shape) == 2


def quantize_ct2_weights(
    source_dir: Path,
    out_dir: Path,
    select: Callable[[str], bool],
    *,
    levels: int = INT7_LEVELS,
) -> Path:
    """Copy the CTranslate2 model in ``source_dir`` to ``out_dir`` with the float weight matrices
    that ``select(name)`` accepts stored as int8 in -``levels``..``levels`` (one scale a row,
    CTranslate2's own layout: ``round(w * scale)`` beside ``<name>_scale``).

    CTranslate2 keeps int8 weights it is given and quantises the others to +-127 itself. On a
    CPU without VNNI its int8 GEMM (oneDNN, or MKL) multiplies u8 activations by s8 weights in
    pairs summed into int16 (``vpmaddubsw``), which saturates: Whisper-base's pooled frames then
    reach a cosine of only 0.988-0.990 to float32's on an AVX2-only AMD EPYC (0.9997 with MKL
    there). With weights in +-63 no pair can saturate, so such a CPU computes the exact integer
    sums (as a VNNI one does with any weights), at the same speed (measured 2026-12-07: cosine
    0.9995 pooled, 0.997 per frame). Weights already quantised, and those not selected, are
    copied as they are.
    """
    if not 1 <= levels <= 127:
        raise ValueError(f"levels must be 1..127, got {levels}")

    def changes(src: Path, entries: Mapping[str, _Entry], reader: _Reader) -> dict[str, _Bytes]:
        new: dict[str, _Bytes] = {}
        for name, entry in entries.items():
            kind = _DTYPES[entry.type_id][0]
            if not (select(name) and is_matrix_weight(name, entry.shape)) or f"{name}_scale" in entries:
                continue
            if kind not in ("float32", "float16", "bfloat16"):
                continue
            value = _load(reader, entry).astype(np.float32)
            peak = np.abs(value).max(axis=1)
            scale = (levels / np.where(peak > 0, peak, 1.0)).astype(np.float32)
            quantized = np.clip(np.rint(value * scale[:, None]), -levels, levels).astype(np.int8)
            new[name] = _Bytes(entry.shape, _INT8, quantized.tobytes())
            new[f"{name}_scale"] = _Bytes((entry.shape[0],), _FLOAT32, scale.astype("<f4").tobytes())
        return new

    return _rewrite(Path(source_dir), Path(out_dir), changes, lambda name: False)


_FLOAT32, _INT8 = 0, 1


@dataclass(frozen=True)
class _Bytes:
    """A variable as it is written: its shape, dtype id and raw bytes."""

    shape: tuple[int, ...]
    type_id: int
    data: bytes


def _rewrite(
    source_dir: Path,
    out_dir: Path,
    changes: Callable[[Path, Mapping[str, _Entry], _Reader], Mapping[str, _Bytes]],
    gone: Callable[[str], bool],
) -> Path:
    """Copy ``source_dir``'s model with the variables ``changes`` returns (new or replaced), those
    ``gone`` names left out; the folder is written beside ``out_dir`` and renamed."""
    src = source_dir / "model.bin"
    if not src.is_file():
        raise ModelLoadError(f"{source_dir} is not a CTranslate2 model (no model.bin)")
    spec, revision, index, aliases = _index(src)
    entries = {n: e for n, e in index.items() if not gone(n)}  # name -> where its bytes are
    entries |= {a: index[t] for a, t in aliases.items() if t in index and not gone(a)}  # aliases resolved
    with src.open("rb") as stream:
        new = dict(changes(src, entries, _Reader(stream, src)))
    # an alias stays an alias only when neither it nor its target changes (or is left out)
    kept = {a: t for a, t in aliases.items() if {a, t} <= entries.keys() and not {a, t} & new.keys()}
    own = sorted({n for n in entries if n not in kept} | new.keys())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        for item in source_dir.iterdir():
            if item.is_file() and not item.name.startswith(".") and item.name != "model.bin":
                shutil.copyfile(item, tmp / item.name)
        with src.open("rb") as reader, (tmp / "model.bin").open("wb") as out:
            out.write(struct.pack("<I", BINARY_VERSION) + _string_bytes(spec))
            out.write(struct.pack("<II", revision, len(own)))
            for name in own:
                if name in new:
                    shape, type_id, data = new[name].shape, new[name].type_id, new[name].data
                else:
                    entry = entries[name]
                    reader.seek(entry.offset)
                    shape, type_id, data = entry.shape, entry.type_id, reader.read(entry.n_bytes)
                out.write(_string_bytes(name) + struct.pack("<B", len(shape)))
                out.write(struct.pack(f"<{len(shape)}I", *shape))
                out.write(struct.pack("<BI", type_id, len(data)) + data)
            out.write(struct.pack("<I", len(kept)))
            for alias, target in kept.items():
                out.write(_string_bytes(alias) + _string_bytes(target))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.replace(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def encoder_layers_below(layers: int) -> Callable[[str], bool]:
    """A ``drop`` for :func:`patch_ct2_model` that leaves out encoder layers ``layers`` and up
    (CTranslate2 counts an encoder's layers by the ``encoder/layer_N`` variables it finds; the
    final ``encoder/layer_norm`` stays and then normalises layer ``layers - 1``'s output)."""
    if layers < 1:
        raise ValueError(f"an encoder needs at least one layer, got {layers}")

    def drop(name: str) -> bool:
        number = _encoder_layer(name)
        return number is not None and number >= layers

    return drop


def _encoder_layer(name: str) -> int | None:
    """N for a variable of ``encoder/layer_N/...``, else None."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != "encoder" or not parts[1].removeprefix("layer_").isdigit():
        return None
    return int(parts[1].removeprefix("layer_"))


def encoder_layer_count(model_dir: Path) -> int:
    """How many ``encoder/layer_N`` layers the model in ``model_dir`` has (0: no encoder)."""
    path = Path(model_dir) / "model.bin"
    if not path.is_file():
        raise ModelLoadError(f"{model_dir} is not a CTranslate2 model (no model.bin)")
    _, _, index, aliases = _index(path)
    return len({n for n in map(_encoder_layer, [*index, *aliases]) if n is not None})
