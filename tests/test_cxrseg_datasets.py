"""cxrseg.datasets: the `--data NAME=IMAGES:MASKS` sources of split, finetune and evaluate (the
pooled name `all` refused, colons inside folder paths)."""
import pytest

from cxrseg import evaluate, finetune, split
from synthetic_pairs import write_pairs

REQUIRED = {split: ["--out", "o.csv"], finetune: ["--splits", "s.csv", "--out", "o"],
            evaluate: ["--checkpoint", "micro", "--out", "o.csv"]}


@pytest.mark.parametrize("module", REQUIRED, ids=lambda m: m.__name__)
def test_the_pooled_name_all_is_refused_at_parse_time(module, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--data", "all=/a:/b", *REQUIRED[module]])
    assert stop.value.code == 2
    assert "dataset name 'all' is taken" in capsys.readouterr().err


def test_a_colon_inside_a_data_folder_path(tmp_path, capsys):
    base = tmp_path / "run:1"
    write_pairs(base, "c")
    spec = f"c={base / 'images'}:{base / 'masks'}"
    split.main(["--data", spec, "--out", str(tmp_path / "seg" / "splits.csv")])
    rows = (tmp_path / "seg" / "splits.csv").read_text().splitlines()
    assert len(rows) == 13 and rows[1].startswith("c00,c,")
    with pytest.raises(SystemExit) as stop:                    # the folders do not exist
        split.main(["--data", f"c={tmp_path / 'no:1'}:{tmp_path / 'no:2'}",
                    "--out", str(tmp_path / "s2.csv")])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "NAME=IMAGES:MASKS" in err and "no split of it names two existing folders" in err
    assert "ln -s" in err
    assert "colon" in split.build_parser().format_help()
