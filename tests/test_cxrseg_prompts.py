"""cxrseg.prompts and cxrseg.losses: boxes, the prior from the average mask, perturbation,
losses."""
import numpy as np
import pytest
import torch

from cxrseg.losses import dice_iou, dice_loss, segmentation_loss
from cxrseg.prompts import (Prior, build_prior, content_frame, mask_box, perturb_boxes,
                            prediction_box)


def _lungs(h=60, w=50, top=10, bottom=50, shift=0):
    m = np.zeros((h, w), np.uint8)
    m[top:bottom, 5 + shift:20 + shift] = 1
    m[top:bottom, 28 + shift:44 + shift] = 1
    return m


def test_mask_box_and_prediction_box_drop_specks():
    m = _lungs()
    assert mask_box(m).tolist() == [5, 10, 43, 49]
    noisy = m.copy()
    noisy[58, 1] = 1
    assert prediction_box(noisy).tolist() == [5, 10, 43, 49]
    assert prediction_box(np.zeros_like(m)) is None
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((3, 3)))


def test_content_frame_ignores_black_borders():
    image = np.zeros((40, 40), np.uint8)
    image[5:30, 8:36] = 100
    assert content_frame(image).tolist() == [8, 5, 36, 30]
    assert content_frame(np.zeros((4, 6))).tolist() == [0, 0, 6, 4]


def test_prior_from_average_mask_places_box_and_points(tmp_path):
    images = [np.full((60, 50), 128, np.uint8)] * 4
    masks = [_lungs(top=t) for t in (8, 10, 12, 10)]
    prior = build_prior(images, masks, frame="image", grid=100)
    box = prior.box_for(images[0])
    assert np.allclose(box, [5, 10, 43, 49], atol=1.5)       # the region covered by most masks
    xy, labels = prior.points_for(images[0])
    assert labels.tolist() == [1, 1, 0]
    for (x, y), label in zip(xy, labels):
        inside = masks[1][int(round(y)), int(round(x))] == 1
        assert inside == bool(label)                         # positives in a lung, negative outside
    prior.save(tmp_path / "prior.json")
    again = Prior.load(tmp_path / "prior.json")
    assert np.allclose(again.box_for(images[0]), box)
    (tmp_path / "bad.json").write_text("{\"boxes\": 1}")
    with pytest.raises(ValueError, match="bad.json"):
        Prior.load(tmp_path / "bad.json")


def test_prior_follows_the_content_frame():
    # the same anatomy letterboxed into a larger black canvas: the content-frame box moves with it
    image, mask = np.full((60, 50), 128, np.uint8), _lungs()
    prior = build_prior([image], [mask], frame="content", grid=100)
    canvas = np.zeros((100, 100), np.uint8)
    canvas[20:80, 30:80] = image
    assert np.allclose(prior.box_for(canvas), mask_box(mask) + [30, 20, 30, 20], atol=1.5)


def test_perturb_boxes_stays_inside_and_is_seeded():
    boxes = torch.tensor([[10.0, 10, 50, 60], [0, 0, 63, 63]])
    a = perturb_boxes(boxes, 5, 64, torch.Generator().manual_seed(1))
    b = perturb_boxes(boxes, 5, 64, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, boxes)
    assert ((a >= 0).all() and (a <= 63).all()
            and (a[:, 2] > a[:, 0]).all() and (a[:, 3] > a[:, 1]).all())
    assert ((a - boxes).abs() <= 5 + 1e-5).all()


def test_losses():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 50
    assert dice_loss(perfect, target).max() < 1e-4
    loss, dice, bce = segmentation_loss(torch.zeros_like(target), target)
    assert (torch.allclose(loss, (dice + bce) / 2)
            and torch.allclose(bce, torch.full((2,), np.log(2))))
    loss_f, _, focal = segmentation_loss(torch.zeros_like(target), target, "dicefocal")
    assert (focal < bce).all()
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[:2], b[1:3] = 1, 1
    assert dice_iou(a, b) == pytest.approx((0.5, 1 / 3))
    assert dice_iou(np.zeros((2, 2)), np.zeros((2, 2))) == (1.0, 1.0)
