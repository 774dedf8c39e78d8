"""Differentiable siamese augmentation (DSA)."""

from __future__ import annotations

import pytest
import torch

from utils.augment import DEFAULT_STRATEGY, DSA, TRANSFORMS, DSAParams, strategy_for


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_one_siamese_draw_transforms_every_image_alike(transform):
    """256 identical real images and 10 identical synthetic ones through one siamese draw: 266 identical images
    (the official code's `theta[:] = theta[0]`), whatever the two batch sizes."""
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5))
    real, syn = image.expand(256, -1, -1, -1), image.expand(10, -1, -1, -1)
    for seed in range(4):  # several draws, so flip/crop/cutout are not identity by luck
        dsa = DSA(transform, seed=seed)
        params = dsa.sample_siamese()
        assert params.siamese and params.transform == transform
        out = torch.cat([dsa.apply(real, params), dsa.apply(syn, params)])
        assert out.shape == (266, 3, 32, 32)
        torch.testing.assert_close(out, out[:1].expand_as(out), rtol=0, atol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_per_image_draws_differ_between_images(transform):
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5))
    out = DSA(transform, seed=0)(image.expand(64, -1, -1, -1))
    assert not torch.allclose(out, out[:1].expand_as(out)), "training on a set augments each image on its own"


def test_parameters_with_the_wrong_row_count_are_refused():
    dsa = DSA("color", seed=0)
    with pytest.raises(ValueError, match="1 \\(siamese\\) or 3"):
        dsa.apply(torch.zeros(3, 3, 8, 8), dsa.sample(8))


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
    half = torch.full((2, 1), 0.5)
    color = DSAParams("color", {"brightness": half, "saturation": half, "contrast": half})
    torch.testing.assert_close(dsa.apply(x, color), x, rtol=1e-5, atol=1e-5)
    rotate = DSAParams("rotate", {"angle": half})
    torch.testing.assert_close(dsa.apply(x, rotate), x, rtol=1e-4, atol=1e-4)
    keep = DSAParams("flip", {"flip": torch.ones(2, 1)})
    assert torch.equal(dsa.apply(x, keep), x)
    mirror = DSAParams("flip", {"flip": torch.zeros(2, 1)})
    assert torch.equal(dsa.apply(x, mirror), x.flip(3))
    no_shift = DSAParams("crop", {"shift": torch.full((2, 2), 4.5 / 9)})   # the middle of 9 integer shifts: 0
    assert torch.equal(dsa.apply(x, no_shift), x)


def test_color_magnitudes_match_the_papers():
    """brightness +(u − 0.5), saturation ×2u around the channel mean, contrast ×(u + 0.5) around the image mean."""
    x = torch.randn(1, 3, 4, 4)
    dsa = DSA()
    one = torch.ones(1, 1)
    out = dsa.apply(x, DSAParams("color", {"brightness": one, "saturation": one / 2, "contrast": one / 2}))
    torch.testing.assert_close(out, x + 0.5)
    out = dsa.apply(x, DSAParams("color", {"brightness": one / 2, "saturation": one / 4, "contrast": one / 2}))
    grey = x.mean(1, keepdim=True)
    torch.testing.assert_close(out, (x - grey) * 0.5 + grey)


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


def test_crop_shift_is_a_uniform_integer_with_zero_fill():
    """At 32 px the official shift is an integer in [−4, 4], each value equally likely; pixels shifted in are 0."""
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32) + 1
    dsa = DSA("crop")
    for k in range(9):   # u in the k-th of 9 equal bins -> shift k − 4
        for u in (k / 9 + 1e-4, (k + 1) / 9 - 1e-4):
            dy = dx = k - 4
            out = dsa.apply(x, DSAParams("crop", {"shift": torch.tensor([[u, u]])}))
            expected = torch.zeros_like(x)
            rows, cols = slice(max(0, -dy), min(32, 32 - dy)), slice(max(0, -dx), min(32, 32 - dx))
            src_rows, src_cols = slice(rows.start + dy, rows.stop + dy), slice(cols.start + dx, cols.stop + dx)
            expected[..., rows, cols] = x[..., src_rows, src_cols]
            assert torch.equal(out, expected), (k, u)
    # rows and columns draw independently: a shift of (−4, +4)
    out = dsa.apply(x, DSAParams("crop", {"shift": torch.tensor([[0.0, 0.9999]])}))
    assert out[0, 0, 4, 0] == x[0, 0, 0, 4] and (out[..., :4, :] == 0).all() and (out[..., -4:] == 0).all()


def _cutout_mask(top: int, left: int, size: int = 16, image: int = 32) -> torch.Tensor:
    mask = torch.ones(image, image)
    mask[max(0, top):max(0, top + size), max(0, left):max(0, left + size)] = 0
    return mask


def test_cutout_box_is_16_pixels_centred_anywhere_and_clipped():
    """At 32 px: a 16×16 box (int(32·0.5 + 0.5)), its centre a uniform integer in 0..32 (33 positions), clipped."""
    x = torch.ones(1, 3, 32, 32)
    dsa = DSA("cutout")
    cases = {0.0: -8, 0.5: 8, 0.9999: 24, 16.5 / 33: 8, 15.5 / 33: 7}   # u -> top row (centre − 8)
    for u_row, top in cases.items():
        for u_col, left in cases.items():
            out = dsa.apply(x, DSAParams("cutout", {"centre": torch.tensor([[u_row, u_col]])}))
            assert torch.equal(out[0], _cutout_mask(top, left).expand(3, -1, -1)), (u_row, u_col)
    full = dsa.apply(x, DSAParams("cutout", {"centre": torch.tensor([[0.5, 0.5]])}))
    assert (full[0] == 0).all(0).sum() == 16 * 16, "a box fully inside covers 16 x 16 pixels"


def test_strategy_for_digits_has_no_flip():
    assert "flip" not in strategy_for("MNIST").split("_")
    assert "flip" not in DSA(strategy_for("MNIST")).transforms
    assert strategy_for("CIFAR10") == strategy_for("MHIST") == DEFAULT_STRATEGY
    assert "flip" in DSA(strategy_for("CIFAR10")).transforms
