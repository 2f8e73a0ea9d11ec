from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app


def test_models_list_json() -> None:
    result = CliRunner().invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["tiny-random"]["weights_at"] == "seeded random head"
    assert rows["clasp-official"]["weights"] == "hf://llm-lab/CLASP/CLASP_Concat_Final_Fusion_Encoder.pt"
    assert rows["lasp-official-gating"]["fusion"] == "gating"


def test_models_list_table() -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "clasp-official-gating" in result.output and "seeded random head" in result.output


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_models_import_refuses_malicious(tmp_path: Path) -> None:
    import pickle

    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps(print))
    result = CliRunner().invoke(app, ["models", "import", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists()


def test_models_import_writes_safetensors(tmp_path: Path) -> None:
    import torch

    from clasp_ingest.model.fusion import ConcatFusion

    torch.save(ConcatFusion().state_dict(), tmp_path / "LASP_Concat.pt")
    result = CliRunner().invoke(
        app, ["models", "import", str(tmp_path / "LASP_Concat.pt"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["model_id"] == "lasp-official"


def test_importing_model_package_does_not_import_torch() -> None:
    code = "import sys, clasp_ingest.model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_models_import_of_a_missing_file_or_a_folder_is_one_error_line(tmp_path: Path) -> None:
    # Click's own check printed a usage box and exit 2 where every other command says 'error:', exit 1
    out = ["--out", str(tmp_path / "m")]
    missing = CliRunner().invoke(app, ["models", "import", str(tmp_path / "CLASP_Gating.pt"), *out])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no checkpoint file"), missing.output
    folder = CliRunner().invoke(app, ["models", "import", str(tmp_path), *out])
    assert folder.exit_code == 1 and "is not a regular file but a folder" in folder.stderr, folder.output
    assert not (tmp_path / "m").exists()
