"""cxrseg.records: every segmentation stage writes its completion record, listing its outputs."""
import json

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_every_stage_writes_its_record_listing_its_outputs(study, predicted):
    for folder, name, expected in [
            (study / "seg", "done_split.json", {"splits.csv"}),
            (study / "seg", "done_finetune.json", {"best.pt", "last.pt", "curves.csv",
                                                   "prior.json"}),
            (study / "seg", "done_evaluate.json", {"eval.csv", "eval_per_image.csv"}),
            (predicted / "masks", "done_predict.json", {"raw.npy", "index.csv", "prompts.csv"})]:
        record = json.loads((folder / name).read_text())
        assert expected <= set(record["outputs"]), name
        assert all((folder / f).exists() for f in record["outputs"])
