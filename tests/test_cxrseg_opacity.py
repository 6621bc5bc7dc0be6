"""Synthetic opacities stay inside the lung mask and grow with strength."""
import numpy as np
import pytest

from cxrseg.opacity import ALL_KINDS, KINDS, add_opacity, lungs, opacity_map


def _chest(h=64, w=64, seed=0):
    """A dark two-lung phantom on bright soft tissue, and its lung mask (0/1)."""
    mask = np.zeros((h, w), np.uint8)
    mask[10:54, 8:28] = 1
    mask[12:56, 36:56] = 1
    rng = np.random.default_rng(seed)
    image = np.where(mask, 60, 200) + rng.normal(0, 5, (h, w))
    return np.clip(image, 0, 255).astype(np.uint8), mask


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_opacity_stays_inside_the_lung(kind):
    image, mask = _chest()
    for seed in range(5):
        out = add_opacity(image, mask, kind, 1.0, seed=seed)
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
        assert (out[mask == 1].astype(int) - image[mask == 1]).max() > 40   # visibly whiter


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_opacity_is_monotone_in_strength(kind):
    image, mask = _chest()
    strengths = [0.0, 0.25, 0.5, 0.75, 1.0]
    for seed in range(3):
        maps = [opacity_map(mask, kind, s, seed) for s in strengths]
        assert not maps[0].any()
        for low, high in zip(maps, maps[1:]):
            assert (high >= low - 1e-12).all() and high.sum() > low.sum()
        change = [np.abs(add_opacity(image, mask, kind, s, seed).astype(int) - image).sum()
                  for s in strengths]
        assert change == sorted(change) and change[0] == 0


def test_opacity_is_deterministic_and_checks_its_inputs():
    image, mask = _chest()
    np.testing.assert_array_equal(add_opacity(image, mask, "mass", 0.7, seed=4),
                                  add_opacity(image, mask, "mass", 0.7, seed=4))
    with pytest.raises(ValueError, match="unknown opacity kind"):
        opacity_map(mask, "snow", 0.5)
    with pytest.raises(ValueError, match="strength"):
        opacity_map(mask, "haze", 1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        add_opacity(image[:10], mask, "haze", 0.5)
    assert not opacity_map(np.zeros_like(mask), "haze", 1.0).any()


def test_lungs_are_the_two_largest_parts_left_to_right():
    _, mask = _chest()
    mask[0:2, 0:2] = 1          # a speck
    parts = lungs(mask)
    assert len(parts) == 2 and parts[0][30, 10] and parts[1][30, 40]


def test_a_whiteout_covers_both_lung_bases_and_spares_the_apices():
    image, mask = _chest()
    assert "whiteout" not in KINDS          # `opacity` copies keep drawing from the same kinds
    for seed in range(3):
        alpha = opacity_map(mask, "whiteout", 1.0, seed)
        assert alpha[50, 10:26].min() > 0.6 and alpha[52, 38:54].min() > 0.6   # both bases
        assert not alpha[12:20].any()                                           # the apices
