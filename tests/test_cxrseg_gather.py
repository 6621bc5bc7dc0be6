"""cxrseg.gather joins only shards made from the same content (checkpoint, threshold, image
stack, recorded facts), whatever the spelling of the paths, and refuses a foreign output folder.

The shards come from the tiny synthetic study of conftest.py (`predicted`)."""
import json
import shutil

import numpy as np
import pytest

from cliargs import assert_refuses_foreign_folder
from cxrseg import gather
from cxrseg.records import MASK_FACTS
from synthetic_pairs import copy_seg, run_evaluate, run_finetune, run_predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def shards_of(predicted):
    return [str(predicted / "shards" / f"{k}of2") for k in range(2)]


def test_refuses_a_foreign_out_folder_with_a_clean_error(predicted, tmp_path):
    assert_refuses_foreign_folder(
        lambda out: gather.main(["--shards", *shards_of(predicted), "--out", str(out / "raw.npy")]),
        tmp_path / "mine")


def test_gathered_record_equals_the_unsharded_one_on_content(predicted, tmp_path):
    gather.main(["--shards", *shards_of(predicted), "--out", str(tmp_path / "raw.npy")])
    joined = json.loads((tmp_path / "done_predict.json").read_text())
    whole = json.loads((predicted / "masks" / "done_predict.json").read_text())
    for fact in [*MASK_FACTS, "rows_sha256", "images", "empty", "degenerate"]:
        assert joined[fact] == whole[fact], fact


def test_gathered_run_json_records_the_precision_the_shards_ran_in(predicted, tmp_path):
    gather.main(["--shards", *shards_of(predicted), "--out", str(tmp_path / "raw.npy")])
    run = json.loads((tmp_path / "run_predict.json").read_text())
    whole = json.loads((predicted / "masks" / "run_predict.json").read_text())
    assert run["precision"] == whole["precision"] in ("fp32", "bf16")


@pytest.mark.parametrize("refinetune, refused", [
    (("--seed", "1"), r"made from another checkpoint .*checkpoint_id: sha256:"),
    # the same data, drawn as whole lungs
    (("--extent", "full"), r"made from another lung extent .*\(extent: full vs field\)"),
], ids=["another model", "another extent"])
def test_gather_refuses_shards_of_two_segmenters(study, tmp_path, refinetune, refused):
    seg = copy_seg(study, tmp_path)
    run_predict(study, seg, tmp_path / "s0" / "raw.npy", "--shard", "0/2")
    run_finetune(study, seg, *refinetune)           # seg/ fine-tuned again, then re-evaluated
    run_evaluate(study, seg)
    run_predict(study, seg, tmp_path / "s1" / "raw.npy", "--shard", "1/2")
    with pytest.raises(SystemExit, match=r"^error: .*s1: " + refused):
        gather.main(["--shards", str(tmp_path / "s0"), str(tmp_path / "s1"),
                     "--out", str(tmp_path / "m" / "raw.npy")])
    assert not (tmp_path / "m").exists()


def test_gather_refuses_shards_made_at_different_thresholds(study, tmp_path):
    seg = copy_seg(study, tmp_path)
    run_evaluate(study, seg, "--thresholds", "0.30")
    run_predict(study, seg, tmp_path / "s0" / "raw.npy", "--shard", "0/2")
    run_evaluate(study, seg, "--thresholds", "0.45")     # evaluate re-run between the shards
    run_predict(study, seg, tmp_path / "s1" / "raw.npy", "--shard", "1/2")
    with pytest.raises(SystemExit, match=r"^error: .*s1: made from another binarization "
                                         r"threshold .*threshold: 0.45 vs 0.3\)"):
        gather.main(["--shards", str(tmp_path / "s0"), str(tmp_path / "s1"),
                     "--out", str(tmp_path / "m" / "raw.npy")])


def test_gather_refuses_shards_of_two_image_stacks_with_the_same_names(study, tmp_path):
    shutil.copytree(study / "cache", tmp_path / "cache")
    run_predict(tmp_path, study / "seg", tmp_path / "s0" / "raw.npy", "--shard", "0/2")
    stack = np.load(tmp_path / "cache" / "images.npy")
    np.save(tmp_path / "cache" / "images.npy", 255 - stack)       # the cache rebuilt
    run_predict(tmp_path, study / "seg", tmp_path / "s1" / "raw.npy", "--shard", "1/2")
    with pytest.raises(SystemExit, match=r"^error: .*s1: made from another image stack"):
        gather.main(["--shards", str(tmp_path / "s0"), str(tmp_path / "s1"),
                     "--out", str(tmp_path / "m" / "raw.npy")])


def test_gather_accepts_paths_spelled_differently_and_checks_each_index(study, predicted,
                                                                         tmp_path, monkeypatch):
    monkeypatch.chdir(study)
    relative = ["--images", "cache/images.npy", "--index", "cache/index.csv",
                "--checkpoint", "seg/best.pt", "--prior", "seg/prior.json",
                "--threshold-from", "./seg/eval.csv"]
    run_predict(study, study / "seg", tmp_path / "s1" / "raw.npy", "--shard", "1/2", *relative)
    shards = [str(predicted / "shards" / "0of2"), str(tmp_path / "s1")]
    gather.main(["--shards", *shards, "--out", str(tmp_path / "m" / "raw.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "raw.npy"),
                                  np.load(predicted / "masks" / "raw.npy"))
    index = tmp_path / "s1" / "index.csv"
    index.write_text(index.read_text().replace("x11.png", "x99.png"))
    with pytest.raises(SystemExit, match=r"^error: .*s1/index.csv: not the rows its "
                                         r"done_predict.json vouches for"):
        gather.main(["--shards", *shards, "--out", str(tmp_path / "m" / "raw.npy")])


def test_gather_refuses_a_shard_without_content_facts(predicted, tmp_path):
    shutil.copytree(predicted / "shards" / "1of2", tmp_path / "old")
    record = json.loads((tmp_path / "old" / "done_predict.json").read_text())
    del record["prior_sha256"]                              # a record without one of the facts
    (tmp_path / "old" / "done_predict.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"^error: .*old: its done_predict.json does not record "
                                         r"prior_sha256"):
        gather.main(["--shards", str(predicted / "shards" / "0of2"), str(tmp_path / "old"),
                     "--out", str(tmp_path / "m" / "raw.npy")])


def test_gather_refuses_shards_predicted_in_different_precisions(study, tmp_path, monkeypatch):
    import cxrstats.foundation.device as device
    monkeypatch.setattr(device, "cpu_runs_bf16", lambda: True)   # bf16 autocast runs on any CPU
    run_predict(study, study / "seg", tmp_path / "s0" / "raw.npy", "--shard", "0/2",
                "--precision", "fp32")
    run_predict(study, study / "seg", tmp_path / "s1" / "raw.npy", "--shard", "1/2",
                "--precision", "bf16")
    with pytest.raises(SystemExit, match=r"^error: .*s1: made from another network precision .*"
                                         r"precision: bf16 vs fp32\)"):
        gather.main(["--shards", str(tmp_path / "s0"), str(tmp_path / "s1"),
                     "--out", str(tmp_path / "m" / "raw.npy")])
    assert not (tmp_path / "m").exists()
