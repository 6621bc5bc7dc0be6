"""cxrseg.degenerate: which images are too small or featureless to hold a radiograph, and why."""
import numpy as np

from cxrseg.degenerate import MIN_SIDE, MIN_SPREAD, degenerate_reason


def test_degenerate_reason_names_small_constant_and_featureless_images():
    rng = np.random.default_rng(0)
    radiograph = rng.normal(120, 40, (MIN_SIDE, MIN_SIDE)).clip(0, 255).astype(np.uint8)
    assert degenerate_reason(radiograph) is None
    assert degenerate_reason(radiograph[:MIN_SIDE - 1]) == (
        f"smaller than {MIN_SIDE} px ({MIN_SIDE}x{MIN_SIDE - 1})")
    assert degenerate_reason(np.full((64, 64), 7, np.uint8)) == "constant (every pixel 7)"
    faint = (100 + rng.integers(0, MIN_SPREAD - 1, (64, 64))).astype(np.uint8)
    assert degenerate_reason(faint).startswith("featureless")
    speck = np.zeros((64, 64), np.uint8)
    speck[:2, :2] = 255                                     # 0.1% of the pixels: still blank
    assert degenerate_reason(speck).startswith("featureless")
    wide = (100 + rng.integers(0, MIN_SPREAD + 2, (64, 64))).astype(np.uint8)
    assert degenerate_reason(wide) is None
    assert degenerate_reason(radiograph.astype(np.float32) * 0) == "constant (every pixel 0.0)"
