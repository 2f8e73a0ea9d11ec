from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.fusion import build_fusion
from clasp_ingest.training.features import FeatureSet
from clasp_ingest.training.loop import CHECKPOINT_NAME, FitOptions, anchor_distance, fit_head

SPEECH, SPEC, TEXT = 24, 12, 16


def _paired(n: int, seed: int, related: bool = True) -> FeatureSet:
    """Speech/spectrogram features that are noisy linear views of the text embedding."""
    mix = np.random.default_rng(1234)
    to_speech = mix.standard_normal((TEXT, SPEECH)).astype(np.float32)
    to_spec = mix.standard_normal((TEXT, SPEC)).astype(np.float32)
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, TEXT)).astype(np.float32)
    source = text if related else rng.standard_normal((n, TEXT)).astype(np.float32)
    speech = source @ to_speech + 0.1 * rng.standard_normal((n, SPEECH)).astype(np.float32)
    spec = source @ to_spec + 0.1 * rng.standard_normal((n, SPEC)).astype(np.float32)
    return FeatureSet(speech, spec, text)


def _head(kind: str = "concat") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_fusion(kind, SPEECH, SPEC, TEXT)  # type: ignore[arg-type]


@pytest.mark.parametrize(("loss", "kind"), [("contrastive", "concat"), ("huber", "gating")])
def test_training_lowers_validation_loss(loss: str, kind: str) -> None:
    train, val = _paired(128, seed=0), _paired(32, seed=1)
    result = fit_head(_head(kind), train, val, FitOptions(loss=loss, lr=3e-3, max_epochs=15, patience=15))
    first = result.history[0].val_loss
    assert result.best_val_loss < 0.5 * first
    assert result.epochs_run == 15 and not result.stopped_early
    assert result.best_val_loss == min(s.val_loss for s in result.history)
    assert (result.temperature is not None) == (loss == "contrastive")


def test_trained_head_retrieves_its_pairs() -> None:
    train, val = _paired(128, seed=0), _paired(32, seed=1)
    head = _head()
    fit_head(head, train, val, FitOptions(lr=3e-3, max_epochs=20, patience=20))
    with torch.no_grad():
        out = head(torch.from_numpy(val.speech), torch.from_numpy(val.spectrogram)).numpy()
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    text = val.text / np.linalg.norm(val.text, axis=1, keepdims=True)
    top1 = (text @ out.T).argmax(axis=1)
    assert np.mean(top1 == np.arange(32)) > 0.5  # chance is 1/32


def test_early_stopping_keeps_the_best_epoch() -> None:
    # validation pairs are unrelated to their audio: overfitting the training set makes it worse
    train, val = _paired(64, seed=0), _paired(32, seed=1, related=False)
    head = _head()
    result = fit_head(head, train, val, FitOptions(lr=3e-3, max_epochs=50, patience=2))
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2 < 50
    best = result.history[result.best_epoch - 1].val_loss
    assert best == result.best_val_loss
    assert head.training is False  # handed back in eval mode


def test_same_seed_same_weights_and_resume_matches_uninterrupted(tmp_path: Path) -> None:
    train, val = _paired(64, seed=0), _paired(16, seed=1)
    options = FitOptions(lr=3e-3, max_epochs=4, patience=10, seed=7)
    straight = _head()
    fit_head(straight, train, val, options)
    again = _head()
    fit_head(again, train, val, options)
    interrupted = _head()
    fit_head(
        interrupted,
        train,
        val,
        FitOptions(lr=3e-3, max_epochs=2, patience=10, seed=7),
        checkpoint_dir=tmp_path,
    )
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    result = fit_head(interrupted, train, val, options, checkpoint_dir=tmp_path, resume=True)
    assert result.resumed_from == 2 and result.epochs_run == 4 and len(result.history) == 4
    for a, b, c in zip(
        straight.state_dict().values(),
        again.state_dict().values(),
        interrupted.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_checkpoint_guards(tmp_path: Path) -> None:
    train, val = _paired(32, seed=0), _paired(8, seed=1)
    fit_head(_head(), train, val, FitOptions(max_epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="--resume"):
        fit_head(_head(), train, val, FitOptions(max_epochs=2), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="other training options"):
        fit_head(_head(), train, val, FitOptions(max_epochs=2, lr=1.0), checkpoint_dir=tmp_path, resume=True)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown loss"):
        FitOptions(loss="mse")
    with pytest.raises(ConfigError, match=r"--batch-size \(batch_size\) >= 2"):
        FitOptions(batch_size=1)
    with pytest.raises(ConfigError, match="patience"):
        FitOptions(patience=0)
    with pytest.raises(ConfigError, match="temperature"):
        FitOptions(temperature=0.0)


def test_contrastive_training_starts_from_the_given_temperature() -> None:
    train, val = _paired(64, seed=0), _paired(16, seed=1)
    runs = {
        t: fit_head(_head(), train, val, FitOptions(lr=1e-4, max_epochs=1, temperature=t))
        for t in (0.07, 0.02)
    }
    # one epoch at a small learning rate moves the learned temperature only a little
    assert runs[0.07].history[0].temperature == pytest.approx(0.07, rel=0.05)
    assert runs[0.02].history[0].temperature == pytest.approx(0.02, rel=0.05)
    # a colder start sharpens the softmax: a different loss on the same pairs
    assert runs[0.02].history[0].val_loss != pytest.approx(runs[0.07].history[0].val_loss, rel=1e-3)


def test_length_grouped_batches_are_a_permutation_of_like_lengths() -> None:
    from clasp_ingest.training.loop import _length_grouped

    lengths = torch.randint(1, 1000, (1000,), generator=torch.Generator().manual_seed(0))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    grouped = _length_grouped(order, lengths, 64, torch.Generator().manual_seed(2))
    assert sorted(grouped.tolist()) == list(range(1000))
    again = _length_grouped(order, lengths, 64, torch.Generator().manual_seed(2))
    assert torch.equal(grouped, again)  # seeded: a resumed epoch draws the same batches
    spread = [int(lengths[b].max() - lengths[b].min()) for b in torch.split(grouped, 64)[:-1]]
    random_spread = [int(lengths[b].max() - lengths[b].min()) for b in torch.split(order, 64)[:-1]]
    assert max(spread) < min(random_spread)
    tail = 1000 % 64  # one group of all 1000 here: the short batch holds the longest clips, last
    assert lengths[grouped[-tail:]].min() >= lengths[grouped[:-tail]].max()


def _outputs(head: torch.nn.Module, features: FeatureSet) -> torch.Tensor:
    head.eval()
    with torch.no_grad():
        out = head(torch.from_numpy(features.speech), torch.from_numpy(features.spectrogram))
    return torch.nn.functional.normalize(out, dim=-1)


def test_anchor_clips_keep_the_start_heads_outputs() -> None:
    # a head trained on one task, then fine-tuned on pairs whose targets are shuffled
    # (a new task): without anchors its outputs on the old clips drift, with them they stay
    old, old_val = _paired(128, seed=0), _paired(32, seed=1)
    start = _head()
    fit_head(start, old, old_val, FitOptions(lr=3e-3, max_epochs=10, patience=10))
    new = _paired(128, seed=2)
    new = FeatureSet(new.speech, new.spectrogram, np.random.default_rng(5).permutation(new.text))
    anchors = _paired(64, seed=3)
    anchors = FeatureSet(anchors.speech, anchors.spectrogram, _outputs(start, anchors).numpy())
    kept: dict[float, float] = {}
    for weight in (0.0, 20.0):
        head = copy.deepcopy(start)
        options = FitOptions(lr=3e-3, max_epochs=8, patience=8, anchor_weight=weight)
        fit_head(head, new, _paired(32, seed=4), options, anchor=anchors)
        kept[weight] = float(1 - anchor_distance(_outputs(head, old_val), _outputs(start, old_val)))
    drift = {w: 1 - cos for w, cos in kept.items()}  # measured: 0.077 without, 0.010 with
    assert drift[0.0] > 0.03 and drift[20.0] < 0.3 * drift[0.0]


def test_anchor_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="anchor_weight"):
        FitOptions(anchor_weight=-1.0)
    train, val = _paired(16, seed=0), _paired(8, seed=1)
    with pytest.raises(ConfigError, match="anchor clips"):
        fit_head(_head(), train, val, FitOptions(max_epochs=1, anchor_weight=1.0), anchor=_paired(1, seed=2))


def test_frozen_batchnorm_keeps_its_statistics_and_still_trains() -> None:
    train, val = _paired(64, seed=0), _paired(16, seed=1)
    stats: dict[bool, list[torch.Tensor]] = {}
    for frozen in (False, True):
        head = _head("gating")
        before = [b.clone() for n, b in head.named_buffers() if n.endswith(("running_mean", "running_var"))]
        weights = [p.detach().clone() for p in head.parameters()]
        fit_head(head, train, val, FitOptions(lr=3e-3, max_epochs=3, freeze_batchnorm=frozen))
        after = [b for n, b in head.named_buffers() if n.endswith(("running_mean", "running_var"))]
        assert before and not all(torch.equal(w, p) for w, p in zip(weights, head.parameters(), strict=True))
        stats[frozen] = [torch.equal(x, y) for x, y in zip(before, after, strict=True)]
    assert all(stats[True]) and not any(stats[False])
