"""experiments.seg_bench_common.ensemble_probabilities on the micro model: one member is
cxrseg.engine.segment's own refine pass, and members' probabilities are averaged pass by pass."""
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrseg.engine import encode, load_model, segment
from cxrseg.prompts import Prior
from experiments.seg_bench_common import ensemble_probabilities

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendor_medsam"
MICRO_STATE = FIXTURES / "micro_sam" / "state_dict.pt"
CPU = torch.device("cpu")
PRIOR = Prior(box=[0.1, 0.1, 0.9, 0.9], points=[[0.4, 0.4, 1]], frame="image")

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def setup():
    model = load_model(str(MICRO_STATE), "micro")
    rng = np.random.default_rng(5)
    images = list(rng.integers(0, 256, (3, 40, 60), dtype=np.uint8))
    return model, encode(model, images, CPU), images


def test_one_member_is_segments_refine_pass(setup):
    model, emb, images = setup
    for refine in (0, 1, 2):
        want = segment(model, emb, images, CPU, "box", PRIOR, refine=refine, threshold=0.5)[1]
        got = ensemble_probabilities([(model, emb)], images, PRIOR, refine, 0.5)
        for g, w in zip(got, want):
            assert torch.equal(g, w)


def test_members_are_averaged_and_share_each_pass_box(setup):
    model, emb, images = setup
    other = load_model(str(MICRO_STATE), "micro")
    with torch.no_grad():
        for p in other.mask_decoder.parameters():
            p.mul_(0.5)
    alone = ensemble_probabilities([(model, emb)], images, PRIOR, 0, 0.5)
    twice = ensemble_probabilities([(model, emb), (model, emb)], images, PRIOR, 1, 0.5)
    refined = segment(model, emb, images, CPU, "box", PRIOR, refine=1, threshold=0.5)[1]
    assert all(torch.equal(a, b) for a, b in zip(twice, refined))
    pair = ensemble_probabilities([(model, emb), (other, emb)], images, PRIOR, 0, 0.5)
    half = ensemble_probabilities([(other, emb)], images, PRIOR, 0, 0.5)
    for p, a, h in zip(pair, alone, half):
        assert torch.allclose(p, (a + h) / 2)
        assert not torch.allclose(p, a)


def test_ensembles_are_named_by_run_suffixes_and_members_must_be_unique_and_finished(tmp_path):
    import argparse

    from experiments.covid_ensemble import member_folder, parse_ensemble
    assert parse_ensemble("pair=-e20-p3,-e20-p3-s1") == ("pair", ["-e20-p3", "-e20-p3-s1"])
    for bad in ("-e20-p3", "=-e20-p3", "name="):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=SUFFIX"):
            parse_ensemble(bad)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "covid-fold1-e20-p3").mkdir(parents=True)
    with pytest.raises(SystemExit, match="covid-fold1-e20-p3: 0 finished runs"):
        member_folder([a, b], 1, "-e20-p3")          # no done_finetune.json: not finished
    (a / "covid-fold1-e20-p3" / "done_finetune.json").write_text("{}")
    assert member_folder([a, b], 1, "-e20-p3") == a / "covid-fold1-e20-p3"
    (b / "covid-fold1-e20-p3").mkdir(parents=True)
    (b / "covid-fold1-e20-p3" / "done_finetune.json").write_text("{}")
    with pytest.raises(SystemExit, match="2 finished runs"):
        member_folder([a, b], 1, "-e20-p3")


def test_open_mask_cuts_a_thin_protrusion_and_stays_within_the_mask():
    from experiments.seg_bench_common import open_mask
    mask = np.zeros((200, 300), bool)
    mask[20:150, 40:140] = True          # a lung
    mask[150:190, 80:84] = True          # a thin run below it
    opened = open_mask(mask, 0.02, side=300)
    assert not opened[160:190].any()                 # the 4-pixel run is gone
    assert opened[40:130, 60:120].all()              # the lung's body stays
    assert not (opened & ~mask).any()                # never beyond the mask
    assert (open_mask(mask, 0.0) == mask).all()
    assert not open_mask(np.zeros((5, 5), bool), 0.1).any()
