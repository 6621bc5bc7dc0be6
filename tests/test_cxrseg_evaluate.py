"""cxrseg.evaluate on bad input (range-checked flags, a zero-byte checkpoint, a foreign output
folder, a split the checkpoint was not fine-tuned on), eval.csv naming each checkpoint by content
and writing thresholds that read back as chosen."""
import csv
import json

import pytest

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder
from cxrseg import evaluate, finetune, split
from cxrseg.engine import checkpoint_id
from cxrseg.segmenter import threshold_from_eval
from cxrseg.records import EVALUATE, require_finished
from cxrstats.foundation.fileio import IncompleteRunError, file_sha256
from synthetic_pairs import copy_seg, data_flags, run_evaluate
from vendor_medsam.configs import CONFIGS

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REQUIRED = ["--images", "i", "--masks", "m", "--checkpoint", "micro", "--out", "o.csv"]
BAD_FLAGS = [["--refine", "-1"], ["--threshold", "1.5"], ["--thresholds", "0.5", "2"],
             ["--batch-size", "0"], ["--parts", "val", "tset"]]


@pytest.mark.parametrize("flag", BAD_FLAGS, ids=" ".join)
def test_out_of_range_flags_stop_at_parse_time(flag, capsys):
    assert_refused_at_parse(evaluate.main, REQUIRED + flag, flag[0], capsys)


def test_config_choices_come_from_vendor_configs(monkeypatch):
    monkeypatch.setitem(CONFIGS, "extra", CONFIGS["micro"])
    assert evaluate.build_parser().parse_args(REQUIRED + ["--config", "extra"]).config == "extra"


def test_refuses_a_foreign_out_folder_with_a_clean_error(study, tmp_path):
    assert_refuses_foreign_folder(
        lambda out: run_evaluate(study, study / "seg", "--out", str(out / "eval.csv")),
        tmp_path / "mine")


def test_zero_byte_checkpoint_gives_a_clear_error(study, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"error: .*empty.pt: empty file \(0 bytes\)"):
        run_evaluate(study, study / "seg", "--checkpoint", str(tmp_path / "empty.pt"),
                     "--out", str(tmp_path / "eval.csv"), "--config", "micro")


def test_eval_csv_names_each_checkpoint_by_content(study):
    rows = (study / "seg" / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("checkpoint,checkpoint_id,extent,dataset,part,threshold")
    assert all(f"sha256:{file_sha256(study / 'seg' / 'best.pt')}" in r for r in rows[1:])
    assert checkpoint_id("micro", seed=3) == "micro seed 3"


def test_an_eval_csv_edited_since_evaluate_wrote_it_is_refused_naming_it(study, tmp_path):
    """Predict takes its threshold from eval.csv: a Dice edited there (or the file copied from
    another run) is refused, not used to choose another threshold."""
    seg = copy_seg(study, tmp_path)
    require_finished(seg / "eval.csv", EVALUATE, "cxrseg.evaluate")
    rows = list(csv.DictReader(open(seg / "eval.csv", newline="")))
    rows[0]["dice"] = "0.999999"
    with open(seg / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(IncompleteRunError, match=r"seg/eval.csv: changed since the "
                                                 r"cxrseg.evaluate run wrote it"):
        require_finished(seg / "eval.csv", EVALUATE, "cxrseg.evaluate")


def _split(study, folder, *flags):
    split.main([*data_flags(study), "--out", str(folder / "splits.csv"), *flags])
    return folder / "splits.csv"


def test_a_split_other_than_the_one_fine_tuned_on_is_refused(study, tmp_path):
    other = _split(study, tmp_path / "other", "--seed", "1")
    with pytest.raises(SystemExit, match=r"error: .*other/splits.csv: its train/val/test parts "
                                         r"are not the ones .*best.pt was fine-tuned on"):
        run_evaluate(study, study / "seg", "--splits", str(other),
                     "--out", str(tmp_path / "eval" / "eval.csv"))
    assert not (tmp_path / "eval").exists()


def test_a_fold_file_gives_the_validation_part_drawn_with_the_fine_tuning_seed(study, tmp_path):
    folds = _split(study, tmp_path / "folds", "--folds", "3")
    seg = tmp_path / "seg"
    finetune.main(["--checkpoint", "micro", *data_flags(study), "--splits", str(folds),
                   "--fold", "0", "--seed", "1", "--epochs", "0", "--train", "decoder",
                   "--out", str(seg), "--device", "cpu"])
    run_evaluate(study, seg, "--splits", str(folds), "--fold", "0")    # evaluate's --seed is 0
    trained = split.read_splits(folds, fold=0, seed=1)
    per_image = list(csv.DictReader(open(seg / "eval_per_image.csv")))
    assert {r["stem"] for r in per_image if r["part"] == "val"} == {
        s for s, p in trained.items() if p == "val"}
    with pytest.raises(SystemExit, match=r"error: .*not the ones .*best.pt was fine-tuned on "
                                         r"\(it was fine-tuned with --fold 0, evaluate has "
                                         r"--fold 1\)"):
        run_evaluate(study, seg, "--splits", str(folds), "--fold", "1")


def test_predict_reads_back_the_threshold_evaluate_chose(study, tmp_path):
    seg = copy_seg(study, tmp_path)
    run_evaluate(study, seg, "--thresholds", "0.333", "0.3349", "0.4")
    rows = list(csv.DictReader(open(seg / "eval.csv")))
    assert {r["threshold"] for r in rows if r["part"] == "val"} == {"0.333", "0.3349", "0.40"}
    chosen = json.loads((seg / "done_evaluate.json").read_text())["thresholds"]
    best = str(seg / "best.pt")
    assert threshold_from_eval(seg / "eval.csv", checkpoint_id(best), best) == chosen[best]
