"""What counts as a degenerate image: one too small or too featureless to hold a chest radiograph.

cxrseg.predict still segments such an image (so that mask rows stay aligned with image rows and no
image is dropped), warns on stderr naming it and the reason, and lists it in done_predict.json
(`degenerate`); cxrseg.postprocess then flags its mask in qc.csv (`degenerate_image`, the reason in
`note`). The rule, in `degenerate_reason`:
- a side shorter than MIN_SIDE pixels: the lung fields would be a few pixels wide;
- constant: every pixel has one value (a blank or failed export);
- featureless: the 1st to 99th percentile of the gray values spans fewer than MIN_SPREAD levels
  (a nearly blank picture; a radiograph spans well over a hundred).
"""
from __future__ import annotations

import numpy as np

MIN_SIDE = 32     # pixels, shorter side
MIN_SPREAD = 8    # gray levels between the 1st and 99th percentile (uint8 scale)
TAIL = 0.01       # the share of pixels left out at each end of the spread
RULE = (f"a side under {MIN_SIDE} px, every pixel equal, or {1 - 2 * TAIL:.0%} of the pixels "
        f"within fewer than {MIN_SPREAD} gray levels")   # the rule in words, for --help


def gray_spread(image: np.ndarray) -> float:
    """Gray levels between the TAIL and 1 - TAIL quantiles of an (H, W) image (uint8 by a
    histogram, fast on large stacks; other dtypes by np.quantile)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        low, high = np.quantile(image, [TAIL, 1 - TAIL])
        return float(high - low)
    cumulative = np.cumsum(np.bincount(image.ravel(), minlength=256)) / image.size
    low = int(np.searchsorted(cumulative, TAIL, side="left"))
    high = int(np.searchsorted(cumulative, 1 - TAIL, side="left"))
    return float(max(high - low, 0))


def degenerate_reason(image: np.ndarray) -> str | None:
    """Why an (H, W) image cannot hold a chest radiograph ("; "-joined reasons), or None when it
    can."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    reasons = []
    if min(h, w) < MIN_SIDE:
        reasons.append(f"smaller than {MIN_SIDE} px ({w}x{h})")
    if image.size == 0:
        reasons.append("no pixels")
    elif image.min() == image.max():
        reasons.append(f"constant (every pixel {image.flat[0]})")
    else:
        spread = gray_spread(image)
        if spread < MIN_SPREAD:
            reasons.append(f"featureless ({1 - 2 * TAIL:.0%} of the pixels within "
                           f"{spread:g} gray levels, under {MIN_SPREAD})")
    return "; ".join(reasons) or None
