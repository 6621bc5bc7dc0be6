"""Predictor on the micro model: shapes, dtype, image-prompt pairing, points-only prompts,
embeddings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vendor_medsam import load_medsam
from vendor_medsam.predictor import Predictor
from vendor_medsam.transforms import InputFrame

MICRO = (Path(__file__).resolve().parent / "fixtures" / "vendor_medsam" / "micro_sam"
         / "state_dict.pt")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def predictor():
    return Predictor(load_medsam(MICRO, "micro"), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (3, 50, 70), dtype=np.uint8)


BOXES = np.array([[5, 5, 40, 30], [20, 10, 65, 45], [0, 0, 69, 49]], np.float32)


def test_predict_boxes_shapes_and_pairing(predictor, images):
    probs = predictor.predict(images, boxes=BOXES)  # 3 images in batches of 2
    assert probs.shape == (3, 50, 70) and probs.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    for i in range(3):  # row i is image i with box i, whatever the batching
        alone = predictor.predict(images[i:i + 1], boxes=BOXES[i:i + 1])
        np.testing.assert_allclose(probs[i], alone[0], atol=1e-5)
    swapped = predictor.predict(images, boxes=BOXES[[1, 0, 2]])
    assert np.abs(swapped[0] - probs[0]).max() > 1e-3  # the box matters


def test_predict_matches_manual_pipeline(predictor, images):
    model = predictor.model
    frame = InputFrame.for_model(model, 50, 70)
    x = frame.image_to_input(images[1])[None]
    with torch.inference_mode():
        logits, _ = model(x, boxes=torch.as_tensor(frame.boxes_to_input(BOXES[1:2])))
    expected = frame.probabilities(logits[0, 0]).numpy()
    np.testing.assert_allclose(predictor.predict(images[1:2], boxes=BOXES[1:2])[0], expected,
                               atol=1e-6)


def test_predict_points_only_and_lists_of_sizes(predictor, images):
    points = np.array([[[30, 20], [10, 40]]] * 3, np.float32)
    labels = np.array([[1, 0]] * 3)
    probs = predictor.predict(list(images), points=points, point_labels=labels)
    assert probs.shape == (3, 50, 70)
    default_labels = predictor.predict(images, points=points)  # all foreground by default
    assert np.abs(default_labels - probs).max() > 1e-4
    mixed = predictor.predict([images[0], images[1][:40, :60]], boxes=BOXES[:2])
    assert isinstance(mixed, list) and mixed[0].shape == (50, 70) and mixed[1].shape == (40, 60)


def test_predict_rejects_bad_prompts(predictor, images):
    with pytest.raises(ValueError, match="boxes and/or points"):
        predictor.predict(images)
    with pytest.raises(ValueError, match="one row per image"):
        predictor.predict(images, boxes=BOXES[:2])
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(images, points=np.zeros((3, 2, 2)), point_labels=np.ones((3, 3)))


def test_embed(predictor, images):
    emb = predictor.embed(images)
    assert emb.shape == (3, 32, 4, 4) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert not emb.requires_grad


def test_default_batch_size_is_one_on_cpu_and_gives_the_same_masks(predictor, images):
    default = Predictor(predictor.model, device="cpu")
    assert default.batch_size == 1
    np.testing.assert_allclose(default.predict(images, boxes=BOXES),
                               predictor.predict(images, boxes=BOXES), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Predictor(predictor.model, device="cpu", batch_size=0)
