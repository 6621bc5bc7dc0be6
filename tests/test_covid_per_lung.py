"""experiments.covid_per_lung: a two-lung mask splits at the mediastinum, each lung prompts the
decoder with its own box, and the per-lung rows keep each film's part."""
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrseg.engine import encode, load_model, segment
from cxrseg.prompts import mask_box
from experiments.covid_per_lung import (per_lung_probabilities, per_lung_set, per_lung_splits,
                                        split_lungs)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendor_medsam"
MICRO_STATE = FIXTURES / "micro_sam" / "state_dict.pt"
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def two_lungs(h=40, w=60, bridge=False):
    mask = np.zeros((h, w), bool)
    mask[5:35, 8:26] = True       # the patient's right lung, on the image's left
    mask[8:38, 33:55] = True
    if bridge:                    # lungs touching across the mediastinum
        mask[20:22, 26:33] = True
    return mask


@pytest.mark.parametrize("bridge", [False, True])
def test_split_lungs_cuts_at_the_mediastinum(bridge):
    right, left = split_lungs(two_lungs(bridge=bridge))
    assert right[5:35, 8:26].all() and not right[:, 33:].any()
    assert left[8:38, 33:55].all() and not left[:, :26].any()
    assert not (right & left).any()


def test_split_lungs_refuses_an_empty_mask_and_one_lung():
    assert split_lungs(np.zeros((10, 10), bool)) is None
    one = np.zeros((10, 10), bool)
    one[2:8, 2:8] = True       # one blob, no narrowing in its middle
    assert split_lungs(one) is None


def test_each_lung_is_prompted_with_its_own_box_and_the_maximum_is_kept():
    model = load_model(str(MICRO_STATE), "micro")
    rng = np.random.default_rng(5)
    images = list(rng.integers(0, 256, (2, 40, 60), dtype=np.uint8))
    emb = encode(model, images, CPU)
    masks = [two_lungs(), np.zeros((40, 60), bool)]
    got = per_lung_probabilities(model, emb, images, masks)
    assert got[1] is None                                  # empty mask: no per-lung pass
    right, left = split_lungs(masks[0])
    each = [segment(model, emb[:1], images[:1], CPU, "box", None,
                    boxes_px=mask_box(part)[None])[1][0] for part in (right, left)]
    assert torch.equal(got[0], torch.maximum(*each))
    assert not torch.equal(each[0], each[1])


def test_per_lung_set_writes_two_rows_per_film_and_is_reused_only_unchanged(tmp_path):
    from PIL import Image
    covid = tmp_path / "covid_dev"
    for sub in ("images", "masks_right", "masks_left"):
        (covid / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(covid / "images" / "a.png")
    for lung, value in (("right", 255), ("left", 0)):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(covid / f"masks_{lung}" / "a.png")
    per_lung_set(covid, tmp_path / "per_lung")
    names = sorted(p.name for p in (tmp_path / "per_lung" / "masks").iterdir())
    assert names == ["a__left.png", "a__right.png"]
    assert np.array(Image.open(tmp_path / "per_lung" / "masks" / "a__right.png")).min() == 255
    assert not (tmp_path / "per_lung.tmp").exists()
    per_lung_set(covid, tmp_path / "per_lung")                       # unchanged: reused
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(covid / "masks_left" / "a.png")
    with pytest.raises(SystemExit, match="masks_left/a.png"):
        per_lung_set(covid, tmp_path / "per_lung")


def test_per_lung_splits_double_the_rows_and_follow_the_fold_split(tmp_path):
    from cxrstats.foundation.fileio import read_csv, write_csv
    whole = tmp_path / "fold0" / "splits.csv"
    whole.parent.mkdir()
    write_csv(whole, ["stem", "dataset", "part"], [["a", "covid", "train"], ["b", "covid", "val"]])
    got = per_lung_splits(whole, tmp_path / "fold0-perlung")
    assert [(r["stem"], r["part"]) for r in read_csv(got)] == [
        ("a__right", "train"), ("a__left", "train"), ("b__right", "val"), ("b__left", "val")]
    assert per_lung_splits(whole, tmp_path / "fold0-perlung") == got  # unchanged: reused
    write_csv(whole, ["stem", "dataset", "part"], [["a", "covid", "val"], ["b", "covid", "train"]])
    with pytest.raises(SystemExit, match="made from another"):
        per_lung_splits(whole, tmp_path / "fold0-perlung")


def test_the_per_lung_encoder_stage_starts_from_the_decoder_run_on_ground_truth_boxes(tmp_path):
    import argparse

    from experiments.covid_per_lung import per_lung_encoder_recipe
    args = argparse.Namespace(augment_copies=2, encoder_epochs=2, encoder_lr=1e-5)
    recipe = per_lung_encoder_recipe(tmp_path / "run", args)

    def value(flag):
        return recipe[recipe.index(flag) + 1]
    assert value("--checkpoint") == str(tmp_path / "run" / "best.pt")
    assert (value("--train"), value("--prior-box-fraction"), value("--epochs"),
            value("--lr"), value("--val-prompt"), value("--augment-copies")) == (
        "all", "0", "2", "1e-05", "gt", "2")
