"""The ONNX engine's own files (an export's ``meta.json``, the int8 ranges) are read as UTF-8
whatever the locale: ``LC_ALL=C`` with ``PYTHONUTF8=0`` made the default encoding ASCII, and a
non-ASCII byte ended the demo with a ``UnicodeDecodeError`` (tester 2 of session 29)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import locale
import sys
from pathlib import Path
import onnx
from onnx import TensorProto, helper
from clasp_ingest.model.int8 import ranges_cover
from clasp_ingest.model.onnx_engine import exported_logmel

folder = Path(sys.argv[1])
conv = helper.make_node("Conv", ["images", "w"], ["features"])
graph = helper.make_graph(
    [conv], "cnn",
    [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 1, 4, 4])],
    [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 1, 4, 4])],
    [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])],
)
onnx.save(helper.make_model(graph), str(folder / "cnn.onnx"))
print(locale.getpreferredencoding(False), sys.flags.utf8_mode, exported_logmel(folder),
      ranges_cover(folder / "cnn.onnx", folder / "ranges.json"))
"""


def test_meta_and_ranges_are_read_as_utf8_in_an_ascii_locale(tmp_path: Path) -> None:
    meta = {"model_id": "clasp-mini-v1.1", "note": "modèle entraîné", "logmel": None}
    (tmp_path / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    ranges = {"data": {"images": [0.0, 1.0]}, "note": "Größe"}
    (tmp_path / "ranges.json").write_text(json.dumps(ranges, ensure_ascii=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env={**env, "LC_ALL": "C", "PYTHONUTF8": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ANSI_X3.4-1968", "0", "None", "['features']"]  # an ASCII locale
