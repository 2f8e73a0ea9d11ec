from __future__ import annotations

import math

import pytest
import torch

from clasp_ingest.training.losses import HuberEmbeddingLoss, InfoNCELoss, build_loss


def test_infonce_starts_at_temperature_0_07_and_divides() -> None:
    loss = InfoNCELoss()
    assert loss.temperature == pytest.approx(0.07)
    eye = torch.eye(2)
    logits = loss.logits(eye * 3.0, eye)  # inputs are L2-normalised first
    assert torch.allclose(logits, eye / 0.07)
    # sims [[1, .6], [.6, 1]]; each row and column: -log(e^(1/T) / (e^(1/T) + e^(.6/T)))
    pairs = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    expected = math.log1p(math.exp(-0.4 / 0.07))
    assert loss(pairs, pairs).item() == pytest.approx(expected, rel=1e-4)


def test_infonce_is_symmetric_mean_of_both_directions() -> None:
    torch.manual_seed(0)
    audio, text = torch.randn(6, 8), torch.randn(6, 8)
    loss = InfoNCELoss()
    logits = loss.logits(audio, text)
    target = torch.arange(6)
    a2t = torch.nn.functional.cross_entropy(logits, target)
    t2a = torch.nn.functional.cross_entropy(logits.T, target)
    assert loss(audio, text).item() == pytest.approx(((a2t + t2a) / 2).item(), rel=1e-6)
    assert loss(audio, text).item() == pytest.approx(loss(text, audio).item(), rel=1e-6)


def test_infonce_temperature_is_learnable_and_clamped() -> None:
    loss = InfoNCELoss()
    torch.manual_seed(1)
    value = loss(torch.randn(4, 5, requires_grad=True), torch.randn(4, 5))
    value.backward()
    assert loss.log_temperature.grad is not None and loss.log_temperature.grad.abs() > 0
    with torch.no_grad():
        loss.log_temperature.fill_(math.log(1e-6))
    assert loss.temperature == pytest.approx(0.01)


def test_huber_on_normalised_vectors_by_hand() -> None:
    audio, text = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    # normalised difference is (1, -1): |d| = 1 per element
    assert HuberEmbeddingLoss(delta=1.0)(audio, text).item() == pytest.approx(0.5)
    assert HuberEmbeddingLoss(delta=0.6)(audio, text).item() == pytest.approx(0.6 * (1 - 0.3))
    assert HuberEmbeddingLoss()(text, text).item() == 0.0


def test_build_loss_names() -> None:
    assert isinstance(build_loss("contrastive"), InfoNCELoss)
    assert isinstance(build_loss("huber", huber_delta=0.5), HuberEmbeddingLoss)
    with pytest.raises(ValueError, match="contrastive"):
        build_loss("triplet")
