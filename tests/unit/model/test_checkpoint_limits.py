"""Pickles that torch's restricted unpickler admits but that would call classes, allocate what
the file does not hold, or crash the state-dict walk: all end in ``ModelLoadError`` naming the
file, before anything large is made. Sizes are chosen so that, were they allocated, the
allocation would fail at once rather than fill memory."""

from __future__ import annotations

import collections
import copyreg
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.checkpoint import import_official, read_official_state_dict

HUGE = 10**7  # a 10^7 x 10^7 float matrix: 400 TB, refused by any allocator


class HubertLabseConcat(nn.Module):
    """Pickled as the paper's notebook class (``__main__.HubertLabseConcat``)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_seq = nn.Sequential(nn.Linear(2, 2))


class _Calls:
    """Pickles as a call of ``func(*args)`` (what a crafted file can ask for)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


def _save_paper(model: nn.Module, path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(HubertLabseConcat, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "HubertLabseConcat", HubertLabseConcat, raising=False)
    torch.save(model, path)
    return path


def _with_pickle(path: Path, pickled: bytes) -> Path:
    """A zip checkpoint as torch.save writes it, its ``data.pkl`` replaced by ``pickled``."""
    torch.save({}, path.with_suffix(".base"))
    with zipfile.ZipFile(path.with_suffix(".base")) as base, zipfile.ZipFile(path, "w") as out:
        for entry in base.infolist():
            data = base.read(entry)
            out.writestr(entry.filename, pickled if entry.filename.endswith("data.pkl") else data)
    return path


def test_a_paper_module_whose_state_is_not_a_modules_is_named_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = HubertLabseConcat()
    model._modules["audio_seq"] = 5  # type: ignore[assignment]  # what a damaged file can hold
    path = _save_paper(model, tmp_path / "badstate.pt", monkeypatch)
    with pytest.raises(
        ModelLoadError, match=r"badstate\.pt' is not a CLASP fusion checkpoint or is damaged.*a int among"
    ):
        import_official(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (_Calls(nn.Linear, HUGE, HUGE), r"a call of GLOBAL torch\.nn\.modules\.linear\.Linear"),
        (_Calls(bytearray, HUGE * HUGE), r"a call of GLOBAL __builtin__\.bytearray"),
        (_Calls(torch.Tensor, HUGE, HUGE), r"a call of GLOBAL torch\.Tensor"),
        (_Calls(HubertLabseConcat), r"a call of GLOBAL __main__\.HubertLabseConcat"),
    ],
)
def test_allowed_classes_are_never_called(
    call: _Calls, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save_paper([call], tmp_path / "calls.pt", monkeypatch)  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match=rf"refusing to load .*calls\.pt'.*{named}.*never called"):
        read_official_state_dict(path)


def test_a_rebuild_through_another_callable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch admits _rebuild_from_type_v2, which calls its first argument: here nn.Linear(HUGE, HUGE)
    call = _Calls(torch._tensor._rebuild_from_type_v2, nn.Linear, torch.Tensor, (HUGE, HUGE), {})
    path = _save_paper([call], tmp_path / "through.pt", monkeypatch)  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match=r"through\.pt'.*rebuilt through .*Linear.*only torch's tensor"):
        read_official_state_dict(path)


def test_small_values_that_torch_admits_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook's module often keeps ``self.device``; torch's own loader reads these, so must we."""
    from clasp_ingest.model.checkpoint import _unpickle

    model = HubertLabseConcat()
    values = {"device": torch.device("cpu"), "shape": torch.Size([2, 2]), "tag": b"clasp"}
    for name, value in {**values, "counts": collections.Counter(a=1), "scale": complex(1, 2)}.items():
        setattr(model, name, value)
    loaded = _unpickle(_save_paper(model, tmp_path / "attrs.pt", monkeypatch))
    assert loaded.device == torch.device("cpu") and loaded.shape == (2, 2) and loaded.tag == b"clasp"
    assert loaded.counts["a"] == 1 and loaded.audio_seq[0].weight.shape == (2, 2)


def test_a_module_is_only_made_empty(tmp_path: Path) -> None:
    """NEWOBJ of an allowed class with arguments (``Linear.__new__(Linear, n, n)``)."""
    pickled = b"\x80\x02ctorch.nn.modules.linear\nLinear\nM\xe0.M\xe0.\x86\x81."
    with pytest.raises(ModelLoadError, match=r"refusing.*Linear made with arguments \(12000, 12000\)"):
        read_official_state_dict(_with_pickle(tmp_path / "newobj.pt", pickled))


def test_old_format_storages_larger_than_the_file_are_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"audio_seq.0.weight": torch.zeros(4)}, path, _use_new_zipfile_serialization=False)
    numel = b"\x8a\x08" + (HUGE * HUGE).to_bytes(8, "little", signed=True)  # LONG1
    data, found = re.subn(
        rb"(X\x03\x00\x00\x00cpu(?:q.)?)K\x04", lambda m: m.group(1) + numel, path.read_bytes()
    )
    assert found == 1
    path.write_bytes(data)
    with pytest.raises(
        ModelLoadError, match=r"legacy\.pt': it declares 4\d{14} bytes of tensor data but the file"
    ):
        read_official_state_dict(path)


def test_old_format_state_dict_loads(tmp_path: Path) -> None:
    from clasp_ingest.model.checkpoint import _unpickle

    torch.save({"w": torch.arange(4.0)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(_unpickle(tmp_path / "old.pt")["w"], torch.arange(4.0))


def test_views_spanning_more_than_the_file_are_refused(tmp_path: Path) -> None:
    torch.save({"audio_seq.0.weight": torch.zeros(1).expand(HUGE, HUGE)}, tmp_path / "view.pt")
    with pytest.raises(ModelLoadError, match=r"view\.pt': its tensors span 4\d{14} bytes but the file has"):
        read_official_state_dict(tmp_path / "view.pt")


def test_compressed_zip_entries_are_refused(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(10**6)}, tmp_path / "plain.pt")
    with (
        zipfile.ZipFile(tmp_path / "plain.pt") as plain,
        zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for entry in plain.infolist():
            out.writestr(entry.filename, plain.read(entry))
    with pytest.raises(ModelLoadError, match=r"deflated\.pt': its zip entries unpack to 4\d{6} bytes, more"):
        read_official_state_dict(tmp_path / "deflated.pt")


def test_shared_or_looping_submodules_end_the_walk(tmp_path: Path) -> None:
    shared: nn.Module = nn.Linear(1, 1)
    for _ in range(14):  # 2^14 paths to the same layer in a file of a few KB
        shared = nn.Sequential(shared, shared)
    looping = nn.Sequential(nn.Linear(1, 1))
    looping._modules["again"] = looping
    for name, model in (("shared.pt", shared), ("looping.pt", looping)):
        torch.save(model, tmp_path / name)
        with pytest.raises(ModelLoadError, match=rf"{name}': its modules nest more than 10000 submodules"):
            read_official_state_dict(tmp_path / name)


def test_a_checkpoint_that_is_not_a_regular_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match=r"zero\.pt' \(a link\) is not a regular file but a device"):
        import_official(tmp_path / "zero.pt", tmp_path / "out")


def test_the_paper_layout_still_walks_like_state_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = HubertLabseConcat()
    model.audio_seq.append(nn.BatchNorm1d(2))
    model.register_buffer("scratch", torch.zeros(2), persistent=False)
    path = _save_paper(model, tmp_path / "paper.pt", monkeypatch)
    from clasp_ingest.model.checkpoint import _checked_state_of, _unpickle

    state = _checked_state_of(_unpickle(path), path)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_copyreg_newobj_is_how_modules_are_pickled() -> None:
    """The dry run's premise: torch.save writes a module as NEWOBJ with no arguments + BUILD."""
    assert nn.Linear(1, 1).__reduce_ex__(2)[:2] == (copyreg.__newobj__, (nn.Linear,))
