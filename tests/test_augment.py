"""Differentiable siamese augmentation (DSA)."""

from __future__ import annotations

import pytest
import torch

from utils.augment import DEFAULT_STRATEGY, DSA, TRANSFORMS, DSAParams, strategy_for


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_siamese_params_give_identical_rows(transform):
    dsa = DSA(transform, seed=0)
    x = torch.randn(8, 3, 16, 16)
    params = dsa.sample(8)
    assert params.transform == transform
    big = dsa.apply(x, params)
    small = dsa.apply(x[:3], params)
    assert big.shape == x.shape and small.shape == (3, 3, 16, 16)
    torch.testing.assert_close(small, big[:3], rtol=1e-5, atol=1e-5)
    # same parameters again: the same output (apply draws nothing new)
    torch.testing.assert_close(dsa.apply(x, params), big)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_gradients_reach_images(transform):
    dsa = DSA(transform, seed=1)
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    weights = torch.randn(6, 3, 16, 16)
    (dsa(x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_transforms_change_images(transform):
    dsa = DSA(transform, seed=2)
    x = torch.randn(16, 3, 16, 16)
    assert not torch.allclose(dsa(x), x)


def test_none_strategy_is_identity():
    for strategy in ("none", ""):
        dsa = DSA(strategy)
        assert not dsa.enabled and dsa.sample(4) is None
        x = torch.randn(4, 3, 8, 8)
        assert torch.equal(dsa(x), x)
        assert torch.equal(dsa.apply(x, None), x)


def test_neutral_parameters_are_identity():
    x = torch.randn(2, 3, 16, 16)
    dsa = DSA()
    half = torch.full((2,), 0.5)
    color = DSAParams("color", {"brightness": half, "saturation": half, "contrast": half})
    torch.testing.assert_close(dsa.apply(x, color), x, rtol=1e-5, atol=1e-5)
    rotate = DSAParams("rotate", {"angle": half})
    torch.testing.assert_close(dsa.apply(x, rotate), x, rtol=1e-4, atol=1e-4)
    keep = DSAParams("flip", {"flip": torch.ones(2)})
    assert torch.equal(dsa.apply(x, keep), x)
    mirror = DSAParams("flip", {"flip": torch.zeros(2)})
    assert torch.equal(dsa.apply(x, mirror), x.flip(3))


def test_seeded_dsa_repeats():
    def draws(seed):
        dsa = DSA(seed=seed)
        return [dsa.sample(5) for _ in range(6)]

    a, b, c = draws(7), draws(7), draws(8)
    for pa, pb in zip(a, b):
        assert pa.transform == pb.transform
        assert pa.values.keys() == pb.values.keys()
        assert all(torch.equal(pa.values[k], pb.values[k]) for k in pa.values)
    differs = any(pa.transform != pc.transform or any(not torch.equal(pa.values[k], pc.values[k])
                                                      for k in pa.values) for pa, pc in zip(a, c))
    assert differs


def test_unknown_transform_is_an_error():
    with pytest.raises(ValueError) as err:
        DSA("color_blur")
    assert "blur" in str(err.value) and "crop" in str(err.value)


def test_crop_shifts_by_whole_pixels():
    h = w = 32
    ramp = (torch.arange(w).view(1, w) + 100 * torch.arange(h).view(h, 1)).float()
    x = ramp.expand(16, 3, h, w).contiguous()
    dsa = DSA("crop", seed=3)
    out = dsa(x)
    margin = int(dsa.crop_ratio * w)  # shifts are at most 4 pixels: the centre is never padding
    inner = (out - x)[..., margin:h - margin, margin:w - margin]
    shifts = inner.flatten(1).mean(1)
    # every pixel of an image moved by the same whole number of rows and columns
    assert (inner - shifts.view(-1, 1, 1, 1)).abs().max().item() < 1e-2
    assert (shifts - shifts.round()).abs().max().item() < 1e-2
    dx = (shifts.round() % 100).remainder(100)
    dx = torch.where(dx > 50, dx - 100, dx)
    dy = (shifts.round() - dx) / 100
    assert dx.abs().max() <= margin and dy.abs().max() <= margin
    assert (shifts.round() != 0).any(), "some image must actually be shifted"


def test_cutout_zeroes_a_square_patch():
    dsa = DSA("cutout", seed=4)
    x = torch.ones(8, 3, 16, 16)
    out = dsa(x)
    zeros = (out == 0).all(1)  # all channels cut together
    for mask in zeros:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert 0 < len(rows) <= 8 and len(rows) == len(cols)
        assert mask.sum() == len(rows) * len(cols), "the cut-out region is one rectangle"


def test_strategy_for_digits_has_no_flip():
    assert "flip" not in strategy_for("MNIST").split("_")
    assert "flip" not in DSA(strategy_for("MNIST")).transforms
    assert strategy_for("CIFAR10") == strategy_for("MHIST") == DEFAULT_STRATEGY
    assert "flip" in DSA(strategy_for("CIFAR10")).transforms
