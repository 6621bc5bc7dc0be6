"""The share of the true lung kept by the study's masks (cxrseg.coverage.lung_kept)."""
import numpy as np
import pytest
from scipy import ndimage

from cxrseg.coverage import lung_kept, to_pipeline_size
from cxrseg.morphology import disk


def _square(h, w, box):
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 1
    return m


def test_lung_kept_perfect_prediction_keeps_everything():
    truth = _square(40, 40, (8, 32, 8, 32))
    assert lung_kept(truth, truth, erode=2, radii=(3, 6), size=None) == [1.0, 1.0]


def test_lung_kept_counts_the_lung_outside_the_dilated_mask():
    # The prediction misses the right half of the lung; M-3 (erode 1, dilate 3) regrows 2 columns.
    truth = _square(40, 40, (8, 32, 8, 32))
    pred = _square(40, 40, (8, 32, 8, 20))
    kept3, kept30 = lung_kept(pred, truth, erode=1, radii=(3, 30), size=None)
    reference = ndimage.binary_dilation(ndimage.binary_erosion(pred, disk(1)), disk(3))
    assert kept3 == pytest.approx((reference & truth.astype(bool)).sum() / truth.sum())
    assert 12 / 24 < kept3 < 14 / 24 + 1e-9
    assert kept30 == 1.0


def test_lung_kept_empty_prediction_falls_back_to_the_full_image():
    truth = _square(20, 20, (4, 10, 4, 10))
    assert lung_kept(np.zeros((20, 20)), truth, erode=1, radii=(2,), size=None) == [1.0]


def test_lung_kept_scales_radii_to_the_pipeline_size():
    # Radii are pipeline pixels: at twice the size, the same dilation regrows half as much lung.
    truth = _square(32, 32, (4, 28, 4, 28))
    pred = _square(32, 32, (4, 28, 4, 16))
    own = lung_kept(pred, truth, erode=1, radii=(4,), size=None)[0]
    scaled = lung_kept(pred, truth, erode=1, radii=(4,), size=64)[0]
    assert 0.5 < scaled < own < 1
    assert to_pipeline_size(pred, 64).shape == (64, 64)


def test_lung_kept_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        lung_kept(np.zeros((4, 4)), np.zeros((4, 5)))
