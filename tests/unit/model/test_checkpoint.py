from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.checkpoint import import_official, read_official_state_dict
from clasp_ingest.model.clasp import load_fusion_weights
from clasp_ingest.model.config import ModelConfig
from clasp_ingest.model.fusion import ConcatFusion, GatingFusion

SCRIPT = Path(__file__).with_name("make_paper_checkpoints.py")


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True)
    return out


def _outputs(fusion: torch.nn.Module, paper_dir: Path) -> np.ndarray:
    a = torch.from_numpy(np.load(paper_dir / "inputs_a.npy"))
    i = torch.from_numpy(np.load(paper_dir / "inputs_i.npy"))
    with torch.no_grad():
        return fusion.eval()(a, i).numpy()


@pytest.mark.parametrize(("kind", "cls"), [("concat", ConcatFusion), ("gating", GatingFusion)])
def test_import_paper_pickle(paper_dir: Path, tmp_path: Path, kind: str, cls: type) -> None:
    ckpt = read_official_state_dict(paper_dir / f"{kind}.pt")
    assert (ckpt.kind, ckpt.speech_dim, ckpt.spec_dim, ckpt.out_dim) == (kind, 1024, 1000, 768)
    assert set(ckpt.state_dict) == set(cls().state_dict())
    out = import_official(paper_dir / f"{kind}.pt", tmp_path / kind)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "fusion.safetensors"]
    config = ModelConfig.from_file(out / "config.json")
    assert config.fusion.kind == kind and config.weights == "fusion.safetensors"
    assert json.loads((out / "config.json").read_text())["text"]["source"] == "sentence-transformers/LaBSE"
    fusion = load_fusion_weights(config, out / "fusion.safetensors")
    assert isinstance(fusion, cls)
    np.testing.assert_allclose(
        _outputs(fusion, paper_dir), np.load(paper_dir / f"{kind}_expected.npy"), atol=1e-5
    )
    before = (out / "fusion.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"holds a model already.*choose another --out"):
        import_official(paper_dir / f"{kind}.pt", out)  # an import never overwrites a model folder
    assert (out / "fusion.safetensors").read_bytes() == before


@pytest.mark.parametrize("name", ["evil.pt", "evil_nested.pt"])
def test_refuses_malicious_pickle_without_running_it(paper_dir: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelLoadError, match=r"refusing.*GLOBAL") as refused:
        import_official(paper_dir / name, tmp_path / "out")
    assert "weights_only" not in str(refused.value)  # never torch's advice to load it unsafely
    assert not (paper_dir / "pwned").exists()
    assert not (tmp_path / "out").exists()


def test_refuses_plain_pickle_and_garbage(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(ModelLoadError):
        read_official_state_dict(raw)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError):
        read_official_state_dict(garbage)
    random = tmp_path / "random.pkl"
    random.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match=r"random\.pkl.*not a PyTorch checkpoint \(Unsupported operand"):
        read_official_state_dict(random)
    for name, data in (("empty.pt", b""), ("hello.pt", b"hello world\n"), ("j.pt", b"just text\n")):
        (tmp_path / name).write_bytes(data)  # EOFError without a message; KeyError 101 / 106
        with pytest.raises(ModelLoadError, match=rf"{name}.*not a PyTorch checkpoint \(empty, cut short"):
            read_official_state_dict(tmp_path / name)
    assert not marker.exists()


def test_damaged_foreign_and_unfit_files_are_named_with_a_remedy(tmp_path: Path) -> None:
    import fractions
    import zipfile

    with zipfile.ZipFile(tmp_path / "notorch.pt", "w") as archive:
        archive.writestr("hello.txt", "hi")
    torch.save({"w": torch.zeros(3)}, tmp_path / "whole.pt")
    whole = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    for name in ("notorch.pt", "cut.pt"):
        with pytest.raises(
            ModelLoadError, match=rf"{name}'.*damaged or not a PyTorch checkpoint.*copy it again"
        ) as info:
            read_official_state_dict(tmp_path / name)
        assert "miniz" not in str(info.value) and "enforce fail" not in str(info.value)
    torch.save(torch.nn.Linear(4, 4).state_dict(), tmp_path / "linear_state.pt")
    with pytest.raises(ModelLoadError, match=r"linear_state\.pt' holds a OrderedDict .*not a CLASP fusion"):
        read_official_state_dict(tmp_path / "linear_state.pt")
    torch.save({"w": fractions.Fraction(1, 3)}, tmp_path / "fraction.pt")
    with pytest.raises(ModelLoadError, match=r"fractions\.Fraction") as refused:
        read_official_state_dict(tmp_path / "fraction.pt")
    assert "add_safe_globals" not in str(refused.value)  # torch's advice to allow it is not ours


def test_refuses_foreign_module(tmp_path: Path) -> None:
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 3), path)
    with pytest.raises(ModelLoadError, match="not a CLASP fusion checkpoint"):
        read_official_state_dict(path)


def test_plain_state_dict_is_accepted(tmp_path: Path) -> None:
    head = GatingFusion()
    torch.save(head.state_dict(), tmp_path / "sd.pt")
    ckpt = read_official_state_dict(tmp_path / "sd.pt")
    assert ckpt.kind == "gating" and ckpt.class_name == "state_dict"


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))
