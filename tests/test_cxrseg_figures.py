"""cxrseg.figures: needs finished stages, records its run, replaces only its own files in the
folder it shares with the report, and refuses a foreign output folder or a bad --row.

The inputs are the tiny synthetic study of conftest.py (`study`, `predicted`)."""
import json

import pytest

from cliargs import assert_refused_at_parse, assert_refuses_foreign_folder
from cxrseg import figures

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REQUIRED = ["--seg", "s", "--cache", "c", "--masks", "m", "--out", "o"]


def flags(study, masks, out):
    return ["--seg", str(study / "seg"), "--cache", str(study / "cache"), "--masks", str(masks),
            "--out", str(out)]


def test_out_of_range_flags_stop_at_parse_time(capsys):
    assert_refused_at_parse(figures.main, REQUIRED + ["--row", "-1"], "--row", capsys)


def test_figures_need_finished_stages(study, predicted, tmp_path):
    (tmp_path / "cache").mkdir()
    masks = predicted / "shards" / "0of2"          # predicted, not post-processed
    with pytest.raises(SystemExit, match=r"error: .*0of2.*no done_postprocess.json"):
        figures.main(["--seg", str(study / "seg"), "--cache", str(tmp_path / "cache"),
                      "--masks", str(masks), "--out", str(tmp_path / "fig")])


def test_refuses_a_foreign_out_folder_with_a_clean_error(study, predicted, tmp_path):
    assert_refuses_foreign_folder(
        lambda out: figures.main(flags(study, predicted / "masks", out)), tmp_path / "mine")


def test_figures_record_their_run_and_replace_only_their_own_files(study, predicted, tmp_path):
    out = tmp_path / "figures"
    base = flags(study, predicted / "masks", out)
    figures.main(base + ["--worst", "2"])
    done = json.loads((out / "done_segfigures.json").read_text())
    assert set(done["outputs"]) == {"seg_loss_curves.png", "mask_panels.png", "worst_masks.png",
                                    "run_segfigures.json"}
    (out / "roc_curves.png").write_bytes(b"another stage's figure")   # the report's, say
    figures.main(base)
    assert not (out / "worst_masks.png").exists()          # the earlier run's, not this one's
    assert (out / "roc_curves.png").read_bytes() == b"another stage's figure"
    assert "worst_masks.png" not in json.loads((out / "done_segfigures.json").read_text())[
        "outputs"]
