"""Augmented training copies (cxrseg.augmented_copies): seeded, and the mask kept for pixel
changes."""
import numpy as np
import pytest

from cxrseg.augmented_copies import augment, augmented_copies
from synthetic_pairs import two_lungs


def test_augmented_copies_are_seeded_and_keep_the_mask_for_pixel_changes():
    rng = np.random.default_rng(0)
    m = two_lungs()
    image = np.clip(np.where(m, 60, 190) + rng.normal(0, 4, m.shape), 0, 255).astype(np.uint8)
    stems, images, masks = augmented_copies(["a"], [image], [m], ["opacity", "photometric"], 2, 0)
    assert stems == ["a~aug0", "a~aug1"]
    again = augmented_copies(["a"], [image], [m], ["opacity", "photometric"], 2, 0)
    np.testing.assert_array_equal(images[1], again[1][1])
    np.testing.assert_array_equal(masks[0], m)
    assert not np.array_equal(images[0], images[1])
    boxed, boxed_mask = augment(image, m, ["letterbox"], np.random.default_rng(3))
    assert boxed.shape == image.shape and boxed_mask.sum() < m.sum()
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(image, m, ["rotate"], rng)
