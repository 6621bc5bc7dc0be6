"""InputFrame: image pixels <-> model input <-> low-res logits, for both model families."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vendor_medsam import build_sam
from vendor_medsam.transforms import InputFrame


@pytest.fixture(scope="module")
def models():
    with torch.device("meta"):  # only img_size, family and the embedding grid are needed
        return {name: build_sam(name) for name in ("vit_b", "lite", "micro")}


def test_medsam_boxes_and_points_scale_per_axis(models):
    frame = InputFrame.for_model(models["vit_b"], 500, 1000)  # H=500, W=1000
    boxes = np.array([[100, 50, 900, 450]], np.float32)
    np.testing.assert_allclose(frame.boxes_to_input(boxes), [[102.4, 102.4, 921.6, 921.6]],
                               rtol=1e-6)
    pts = torch.tensor([[[10.0, 20.0], [1000.0, 500.0]]])
    out = frame.points_to_input(pts)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([[[10.24, 40.96], [1024.0, 1024.0]]]))


def test_lite_boxes_and_points_scale_by_longest_side(models):
    frame = InputFrame.for_model(models["lite"], 500, 1000)
    assert frame.content_size == (128, 256)
    np.testing.assert_allclose(frame.boxes_to_input([100, 50, 900, 450]),
                               [25.6, 12.8, 230.4, 115.2], rtol=1e-6)
    np.testing.assert_allclose(frame.points_to_input([[1000, 500]]), [[256, 128]], rtol=1e-6)
    tall = InputFrame.for_model(models["lite"], 1000, 500)
    assert tall.content_size == (256, 128)
    np.testing.assert_allclose(tall.boxes_to_input([100, 50, 400, 900]),
                               [25.6, 12.8, 102.4, 230.4], rtol=1e-6)


def test_medsam_image_to_input(models):
    rng = np.random.default_rng(0)
    img = rng.integers(100, 4000, (90, 70)).astype(np.uint16)  # 16-bit grayscale, not 0-based
    frame = InputFrame.for_model(models["micro"], 90, 70)
    x = frame.image_to_input(img)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    # extra channels are dropped
    rgb = frame.image_to_input(np.stack([img, img, img, img], axis=-1))
    torch.testing.assert_close(rgb, x)
    flat = frame.image_to_input(np.full((90, 70), 7, np.uint8))  # constant image: zeros, not NaN
    assert torch.equal(flat, torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="frame was made for"):
        frame.image_to_input(img[:10])


def test_lite_image_is_resized_normalized_and_padded(models):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (100, 200), dtype=np.uint8)
    frame = InputFrame.for_model(models["lite"], 100, 200)
    x = frame.image_to_input(img)
    assert x.shape == (3, 256, 256)
    assert frame.content_size == (128, 256)
    assert torch.count_nonzero(x[:, 128:]) == 0  # zero padding at the bottom
    content = x[:, :128]
    assert content.min().item() == 0.0 and content.max().item() == 1.0


def test_lite_mask_and_logits_round_trip(models):
    """A mask taken into the low-res frame and back (as logits) is unchanged; padding stays
    empty.
    """
    frame = InputFrame.for_model(models["lite"], 64, 128)  # scale 2: content 128x256 of 256x256
    mask = np.zeros((64, 128), np.uint8)
    mask[10:50, 20:100] = 1
    low = frame.mask_to_input(mask)
    assert low.shape == (256, 256) and low.dtype == torch.float32
    assert torch.count_nonzero(low[128:]) == 0 and low.sum().item() == 80 * 160
    assert torch.equal(low[20:100, 40:200], torch.ones(80, 160))
    logits = (low * 20 - 10)[None, None]  # (1, 1, L, L): +10 inside, -10 outside
    back = frame.logits_to_image(logits)
    assert back.shape == (1, 1, 64, 128)
    np.testing.assert_array_equal((back[0, 0] > 0).numpy(), mask.astype(bool))
    probs = frame.probabilities(logits[0, 0])
    assert probs.shape == (64, 128) and 0 <= probs.min() and probs.max() <= 1
    np.testing.assert_array_equal((probs > 0.5).numpy(), mask.astype(bool))


def test_lite_padding_is_ignored_on_the_way_back(models):
    frame = InputFrame.for_model(models["lite"], 64, 128)
    logits = torch.full((256, 256), -10.0)
    logits[128:] = 10.0  # "foreground" only in the padded rows
    assert (frame.probabilities(logits) < 0.5).all()


def test_medsam_mask_round_trip(models):
    frame = InputFrame.for_model(models["vit_b"], 512, 512)  # low-res 256: exact factor 2
    mask = np.zeros((512, 512), bool)
    mask[100:300, 50:450] = True
    low = frame.mask_to_input(mask)
    assert low.shape == (256, 256) and low.sum().item() == 100 * 200
    probs = frame.probabilities(low * 20 - 10)
    np.testing.assert_array_equal((probs > 0.5).numpy(), mask)
