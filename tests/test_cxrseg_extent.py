"""The lung's extent (cxrstats.foundation.extent) end to end: cxrseg.finetune records the declared
--extent (checkpoint settings, run and done records; --resume refuses another),
cxrseg.engine.checkpoint_extent reads it (none for weights not fine-tuned), evaluate and predict
refuse an --extent the checkpoint does not have (naming it and both extents), eval.csv and the
mask records carry it (gather's refusal of two extents is in tests/test_cxrseg_gather.py), and
the report, tightness and attribution read it from the masks' record.

The runs fine-tune the random `micro` model on the tiny synthetic study of conftest.py."""
import csv
import json

import pytest
import torch

from cxrseg.engine import checkpoint_extent
from cxrseg.records import FINETUNE_STAGE
from cxrstats.foundation.extent import main as extent_rule
from cxrstats.results import MASKS_PREDICT_DONE, masks_extent
from synthetic_pairs import (copy_seg, predict_folder, run_evaluate, run_finetune, run_predict)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def record(path):
    return json.loads(path.read_text())


def test_finetune_records_the_extent_it_was_given(study, tmp_path):
    seg = study / "seg"                                     # fine-tuned without --extent
    assert torch.load(seg / "best.pt", weights_only=True)["settings"]["extent"] == "field"
    assert record(seg / "done_finetune.json")["extent"] == "field"
    assert record(seg / "run_finetune.json")["extent"] == "field"
    assert checkpoint_extent(str(seg / "best.pt")) == "field"
    full = tmp_path / "full"
    run_finetune(study, full, "--epochs", "0", "--extent", "full")
    for name in ("best.pt", "last.pt"):
        assert torch.load(full / name, weights_only=True)["settings"]["extent"] == "full"
        assert checkpoint_extent(str(full / name)) == "full"
    assert record(full / "done_finetune.json")["extent"] == "full"
    assert record(full / "done_finetune.json")["arguments"]["extent"] == "full"
    assert record(full / "run_finetune.json")["extent"] == "full"
    with pytest.raises(SystemExit, match=r"error: .*last.pt: cannot resume with different "
                                         r"settings .*'extent': \('full', 'field'\)"):
        run_finetune(study, full, "--epochs", "1", "--resume", "--extent", "field")


def test_weights_not_fine_tuned_for_lungs_have_no_extent(tmp_path):
    assert checkpoint_extent("micro") == checkpoint_extent("tiny") == "none"
    assert checkpoint_extent("lite") == "none"          # read by name, never loaded
    torch.save({"weight": torch.zeros(1)}, tmp_path / "official.pth")   # a raw state dict
    assert checkpoint_extent(str(tmp_path / "official.pth")) == "none"
    torch.save({"model": {}, "stage": FINETUNE_STAGE, "settings": {}}, tmp_path / "old.pt")
    assert checkpoint_extent(str(tmp_path / "old.pt")) == "unrecorded"


def test_the_rule_make_runs():
    assert extent_rule(["--check", "field"]) == extent_rule(["--check", "full"]) == ""
    assert "'wide' is not a lung extent: choose field or full" in extent_rule(["--check", "wide"])


def test_predict_refuses_another_extent_naming_the_checkpoint_and_both(study, tmp_path):
    best = study / "seg" / "best.pt"
    with pytest.raises(SystemExit, match=rf"^error: --extent full: the checkpoint {best} has "
                                         r"extent field \(fine-tuned on visible-lung-field "
                                         r"masks\), not full"):
        run_predict(study, study / "seg", tmp_path / "m" / "raw.npy", "--extent", "full")
    with pytest.raises(SystemExit, match=r"^error: --extent full: the checkpoint .*best.pt has "
                                         r"extent field"):      # a folder of images
        predict_folder(study, study / "images", tmp_path / "pngs", "--checkpoint", str(best),
                       "--extent", "full")
    with pytest.raises(SystemExit, match=r"^error: --extent field: the checkpoint micro has "
                                         r"extent none \(not fine-tuned for lungs\)"):
        predict_folder(study, study / "images", tmp_path / "pngs", "--extent", "field")
    assert not (tmp_path / "m").exists() and not (tmp_path / "pngs").exists()
    predict_folder(study, study / "images", tmp_path / "pngs", "--checkpoint", str(best),
                   "--extent", "field")
    assert record(tmp_path / "pngs" / "done_predict.json")["extent"] == "field"


def test_masks_carry_the_extent_into_every_record(study, predicted):
    for path in (predicted / "masks" / "done_predict.json",
                 predicted / "masks" / "done_postprocess.json",
                 predicted / "shards" / "0of2" / "done_predict.json"):
        assert record(path)["extent"] == "field", path
    assert masks_extent(predicted) == masks_extent(predicted, MASKS_PREDICT_DONE) == "field"
    assert masks_extent(study) is None                     # no masks/ there


def test_evaluate_gives_each_checkpoint_its_extent_and_refuses_another(study, tmp_path):
    rows = list(csv.DictReader(open(study / "seg" / "eval.csv")))
    assert rows and {r["extent"] for r in rows} == {"field"}
    seg = copy_seg(study, tmp_path)
    with pytest.raises(SystemExit, match=r"^error: --extent full: the checkpoint .*best.pt has "
                                         r"extent field"):
        run_evaluate(study, seg, "--extent", "full", "--out", str(tmp_path / "e.csv"))
    run_evaluate(study, seg, "--extent", "field", "--zero-shot", "micro",
                 "--out", str(seg / "eval.csv"))
    extents = {r["checkpoint"]: r["extent"] for r in csv.DictReader(open(seg / "eval.csv"))}
    assert extents == {str(seg / "best.pt"): "field", "micro": "none"}
    assert record(seg / "done_evaluate.json")["extents"] == extents
    per_image = list(csv.DictReader(open(seg / "eval_per_image.csv")))
    assert {(r["checkpoint"], r["extent"]) for r in per_image} == set(extents.items())
