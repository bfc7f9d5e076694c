"""Every model in MODELS: forward/backward, no NaN, shapes on odd sizes through the restorer's pad/crop."""

from __future__ import annotations

import pytest
import torch

from deblur.models import (
    MODELS,
    PIX_AE_CONFIGS,
    MotionGANGenerator,
    PatchDiscriminator,
    PixAE,
    build_model,
    count_params,
)
from deblur.restore.learned import _pad_to_multiple, assemble_input

CASES = [("seed_ae", {}), ("pix_ae", {"k1": 5, "k2": 7}), ("motion_gan", {"upsample": "transpose"}),
         ("motion_gan", {"upsample": "resize"}), ("motion_gan", {"upsample": "pixelshuffle"}), ("resunet", {}),
         ("resunet", {"use_classical": False, "use_strength": False})]


def test_cases_cover_every_model():
    assert {name for name, _ in CASES} == set(MODELS)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_forward_backward_odd_size(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    deg = torch.rand(2, 3, 37, 53)
    x = assemble_input(model, deg, "gaussian", classical=deg.clone(), strengths=torch.tensor([1.0, 6.0]))
    assert x.shape[1] == model.in_channels
    padded, h, w = _pad_to_multiple(x, model.stride)
    assert padded.shape[-2] % model.stride == 0 and padded.shape[-1] % model.stride == 0
    y = model(padded)[..., :h, :w]
    assert y.shape == (2, 3, 37, 53)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_seed_ae_has_the_studys_29507_parameters():
    assert count_params(build_model("seed_ae")) == 29_507


def test_pix_ae_configs_roughly_double():
    counts = [count_params(PixAE(*ks)) for ks in PIX_AE_CONFIGS.values()]
    assert len(counts) == 6 and counts[0] == 29_507
    ratios = [b / a for a, b in zip(counts, counts[1:], strict=False)]
    assert all(1.8 < r < 2.3 for r in ratios), ratios


def test_resunet_is_about_half_a_million_parameters():
    assert 400_000 < count_params(build_model("resunet")) < 650_000


def test_resunet_starts_as_its_base_image():
    model = build_model("resunet")
    deg, cls = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    out = model(assemble_input(model, deg, "motion", cls, torch.tensor([9.0])))
    assert torch.allclose(out, cls)


def test_discriminator_scores_patches():
    d = PatchDiscriminator()
    out = d(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert out.shape[0] == 2 and out.shape[1] == 1 and out.shape[-1] > 1


@pytest.mark.parametrize("bad", ["nope", "SeedAE", ""])
def test_unknown_model_name_lists_known_names(bad):
    with pytest.raises(ValueError, match="seed_ae"):
        build_model(bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="upsample"):
        MotionGANGenerator(upsample="bilinear-ish")
    with pytest.raises(ValueError, match="odd"):
        PixAE(4, 3)
    with pytest.raises(ValueError, match="strength"):
        model = build_model("resunet")
        assemble_input(model, torch.rand(1, 3, 8, 8), "gaussian", torch.rand(1, 3, 8, 8), None)
