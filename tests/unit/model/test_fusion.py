from __future__ import annotations

import pytest
import torch

from clasp_ingest.model.fusion import ConcatFusion, GatingFusion, build_fusion, hidden_sizes

# Parameter names of the paper's HubertLabseConcat / HubertLabseGating state dicts.
BRANCH = [
    "0.weight",
    "0.bias",
    "1.weight",
    "1.bias",
    "1.running_mean",
    "1.running_var",
    "1.num_batches_tracked",
    "4.weight",
    "4.bias",
    "5.weight",
    "5.bias",
    "5.running_mean",
    "5.running_var",
    "5.num_batches_tracked",
    "8.weight",
    "8.bias",
]
CONCAT_KEYS = (
    [f"image_seq.{k}" for k in BRANCH]
    + [f"audio_seq.{k}" for k in BRANCH]
    + [
        "mix_seq.0.weight",
        "mix_seq.0.bias",
        "mix_seq.1.weight",
        "mix_seq.1.bias",
        "mix_seq.1.running_mean",
        "mix_seq.1.running_var",
        "mix_seq.1.num_batches_tracked",
        "mix_seq.3.weight",
        "mix_seq.3.bias",
        "mix_seq.5.weight",
        "mix_seq.5.bias",
    ]
)
GATES = [
    "input_gate_text",
    "input_gate_image",
    "forget_gate_text",
    "forget_gate_image",
    "tanh_text",
    "tanh_image",
]
GATING_KEYS = (
    [f"image_seq.{k}" for k in BRANCH]
    + [f"text_seq.{k}" for k in BRANCH]
    + [f"{g}.0.{p}" for g in GATES for p in ("weight", "bias")]
    + ["weight.0.weight", "weight.0.bias"]
)


def test_paper_parameter_names_and_shapes() -> None:
    concat = ConcatFusion(1024, 1000, 768).state_dict()
    assert list(concat) == CONCAT_KEYS
    assert concat["audio_seq.0.weight"].shape == (768, 1024)
    assert concat["image_seq.4.weight"].shape == (576, 768)
    assert concat["mix_seq.0.weight"].shape == (1024, 1536)
    assert concat["mix_seq.3.weight"].shape == (800, 1024)
    gating = GatingFusion(1024, 1000, 768).state_dict()
    assert list(gating) == GATING_KEYS
    assert gating["weight.0.weight"].shape == (1536, 1536)


def test_hidden_sizes_scale_with_out_dim() -> None:
    assert hidden_sizes(768) == (576, 1024, 800)
    assert hidden_sizes(384) == (288, 512, 400)
    assert hidden_sizes(512) == (384, 683, 533)


@pytest.mark.parametrize("kind", ["concat", "gating"])
@pytest.mark.parametrize("out_dim", [384, 512])
def test_forward_shape_and_batch_independence_in_eval(kind: str, out_dim: int) -> None:
    head = build_fusion(kind, 512, 1280, out_dim).eval()  # type: ignore[arg-type]
    speech, spec = torch.randn(6, 512), torch.randn(6, 1280)
    with torch.no_grad():
        batch = head(speech, spec)
        single = torch.cat([head(speech[i : i + 1], spec[i : i + 1]) for i in range(6)])
    assert batch.shape == (6, out_dim)
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_gating_output_is_convex_mix_of_branches() -> None:
    head = GatingFusion(16, 8, 12).eval()
    with torch.no_grad():
        x1, x2 = head.text_seq(torch.randn(3, 16)), head.image_seq(torch.randn(3, 8))
    assert x1.shape == x2.shape == (3, 12)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown"):
        build_fusion("attention", 4, 4, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["concat", "gating"])
def test_normalize_inputs_flag(kind: str) -> None:
    torch.manual_seed(0)
    norm = build_fusion(kind, 20, 30, 16).eval()  # type: ignore[arg-type]
    raw = build_fusion(kind, 20, 30, 16, normalize_inputs=False).eval()  # type: ignore[arg-type]
    raw.load_state_dict(norm.state_dict())
    a, b = torch.randn(4, 20) * 7, torch.randn(4, 30) * 3
    with torch.no_grad():
        torch.testing.assert_close(
            norm(a, b), raw(torch.nn.functional.normalize(a), torch.nn.functional.normalize(b))
        )
        torch.testing.assert_close(norm(a, b), norm(a * 5, b * 0.1))  # scale-free
        assert not torch.allclose(raw(a, b), norm(a, b))


def test_untrained_attention_pool_is_mean_pooling_over_real_frames() -> None:
    from clasp_ingest.model.fusion import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(8, queries=3)
    a, b = torch.randn(5, 8), torch.randn(2, 8)
    padded = torch.zeros(2, 5, 8)
    padded[0], padded[1, :2] = a, b
    out = pool(padded)
    assert out.shape == (2, 24)
    for row, clip in ((0, a), (1, b)):
        for q in range(3):  # every query gives the mean of the real frames, padding left out
            torch.testing.assert_close(out[row, q * 8 : (q + 1) * 8], clip.mean(0))
    torch.testing.assert_close(pool(a[None, :1, :]), pool(a[:1]))  # a 2-D input is one frame per clip


def test_trained_attention_pool_ignores_padding_and_learns() -> None:
    from clasp_ingest.model.fusion import AttentionPool

    torch.manual_seed(1)
    pool = AttentionPool(8, queries=2)
    with torch.no_grad():
        pool.query.normal_()
    clip = torch.randn(1, 4, 8)
    longer = torch.cat([clip, torch.zeros(1, 6, 8)], dim=1)
    torch.testing.assert_close(pool(clip), pool(longer))
    assert not torch.allclose(pool(clip)[0, :8], clip[0].mean(0))  # no longer a plain mean
    pool(clip).sum().backward()
    assert pool.query.grad is not None and pool.query.grad.abs().sum() > 0
    assert torch.isfinite(pool(torch.zeros(2, 3, 8))).all()  # an all-zero clip: zeros, not NaN


@pytest.mark.parametrize("kind", ["concat", "gating"])
def test_build_fusion_with_attention_pooling(kind: str) -> None:
    from clasp_ingest.model.fusion import AttentionPool, PooledFusion

    head = build_fusion(kind, 16, 12, 24, speech_pool="attention", pool_queries=3)  # type: ignore[arg-type]
    assert isinstance(head, PooledFusion) and isinstance(head.pool, AttentionPool)
    assert head.fusion.speech_dim == 48 and head.pool.query.shape == (3, 16)
    assert head.eval()(torch.randn(4, 7, 16), torch.randn(4, 12)).shape == (4, 24)
    with pytest.raises(ValueError, match="speech pool"):
        build_fusion(kind, 16, 12, 24, speech_pool="max")  # type: ignore[arg-type]


def test_ensemble_of_pooled_heads_sums_unit_outputs_and_round_trips_its_spec() -> None:
    from clasp_ingest.model.config import FusionSpec
    from clasp_ingest.model.fusion import EnsembleFusion

    torch.manual_seed(0)
    head = build_fusion("gating", 8, 6, 4, speech_pool="attention", pool_queries=2, ensemble=3).eval()
    assert isinstance(head, EnsembleFusion) and len(head.members) == 3
    frames, spec = torch.randn(5, 7, 8), torch.randn(5, 6)
    parts = [torch.nn.functional.normalize(m(frames, spec), dim=-1) for m in head.members]
    torch.testing.assert_close(head(frames, spec), parts[0] + parts[1] + parts[2])
    spec3 = FusionSpec("gating", 8, 6, 4, speech_pool="attention", pool_queries=2, ensemble=3)
    assert spec3.to_dict()["ensemble"] == 3 and FusionSpec.from_dict(spec3.to_dict()) == spec3
    assert "ensemble" not in FusionSpec("gating", 8, 6, 4).to_dict()  # single heads' configs unchanged
    with pytest.raises(ValueError, match="at least two"):
        EnsembleFusion([head.members[0]])
    from clasp_ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="ensemble"):
        FusionSpec("gating", 8, 6, 4, ensemble=0)
