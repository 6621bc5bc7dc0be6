"""Nothing lost, nothing mixed: cxrseg never writes over the user's files, gather joins only shards
made from the same content, --threshold-from matches a checkpoint by content, every dataset given
is split or refused, augmentation flags mean what they say, and degenerate images are named.

One tiny study (micro model, 12 synthetic pairs of 40x36) is shared by the file; tests that change
it work on copies."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cliargs import with_flags
from cxrseg import evaluate, figures, finetune, gather, postprocess, predict, split
from cxrseg.degenerate import MIN_SIDE, MIN_SPREAD, degenerate_reason
from cxrseg.engine import checkpoint_id
from cxrseg.records import MASK_FACTS, index_rows_sha256
from cxrstats.fileio import FOLDER_MARKER, read_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def make_pairs(root, prefix="x", n=12, h=40, w=36, seed=0):
    """n pairs <prefix><i>.png in root/images and root/masks: noise plus two bright 'lungs'."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        m[rng.integers(4, 10):rng.integers(28, 36), 4:15] = 1
        m[6:34, 20:32] = 1
        img = (rng.normal(60, 10, (h, w)) + 120 * m).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{prefix}{i:02d}.png")
        Image.fromarray(m * 255).save(root / "masks" / f"{prefix}{i:02d}.png")
    return root


def data_flags(root):
    return ["--images", str(root / "images"), "--masks", str(root / "masks")]


def run_finetune(root, seg, *extra):
    finetune.main(with_flags(
        [*data_flags(root), "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
         "--train", "decoder", "--epochs", "1", "--batch-size", "4", "--lr", "1e-3",
         "--out", str(seg), "--device", "cpu"], *extra))


def run_evaluate(root, seg, *extra):
    evaluate.main(with_flags(
        [*data_flags(root), "--splits", str(root / "seg" / "splits.csv"),
         "--checkpoint", str(seg / "best.pt"), "--out", str(seg / "eval.csv"),
         "--device", "cpu"], *extra))


def run_predict(root, seg, out, *extra):
    predict.main(with_flags(
        ["--images", str(root / "cache" / "images.npy"),
         "--index", str(root / "cache" / "index.csv"), "--checkpoint", str(seg / "best.pt"),
         "--prior", str(seg / "prior.json"), "--threshold-from", str(seg / "eval.csv"),
         "--out", str(out), "--device", "cpu"], *extra))


def write_stack(folder, images, names):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", np.stack(images).astype(np.uint8))
    (folder / "index.csv").write_text("row,image\n" + "".join(f"{i},{n}\n"
                                                               for i, n in enumerate(names)))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """split -> finetune -> evaluate of a tiny study, and a cache stack of its images."""
    root = make_pairs(tmp_path_factory.mktemp("study"))
    split.main([*data_flags(root), "--out", str(root / "seg" / "splits.csv")])
    run_finetune(root, root / "seg")
    run_evaluate(root, root / "seg")
    files = sorted((root / "images").iterdir())
    write_stack(root / "cache", [np.asarray(Image.open(f)) for f in files],
                [f.name for f in files])
    return root


def copy_seg(study, tmp_path):
    """A copy of the study's seg/ (with its records), to fine-tune or evaluate again."""
    shutil.copytree(study / "seg", tmp_path / "seg")
    return tmp_path / "seg"


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_predict(study, images, out):
    predict.main(["--images", str(images), "--checkpoint", "micro",
                  "--prior", str(study / "seg" / "prior.json"), "--out", str(out),
                  "--device", "cpu"])


# ----------------------------------------------------------------------------- 1. user's files

def test_predict_refuses_the_users_image_folder_as_out(study, tmp_path):
    images = tmp_path / "radiographs"
    shutil.copytree(study / "images", images)
    before = snapshot(images)
    with pytest.raises(SystemExit) as stop:
        folder_predict(study, images, images)
    assert str(stop.value.code).startswith(f"error: --out {images}: holds the input")
    assert snapshot(images) == before


def test_predict_refuses_a_folder_of_ground_truth_masks_as_out(study, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(study / "masks", masks)
    before = snapshot(masks)
    with pytest.raises(SystemExit, match=r"^error: .*masks: holds files this toolkit did not"):
        folder_predict(study, study / "images", masks)
    assert snapshot(masks) == before


def test_predict_keeps_out_apart_from_the_inputs_even_in_a_toolkit_folder(study, tmp_path):
    # A folder the toolkit marked (e.g. an earlier predict's PNG masks) given as input and output.
    images = tmp_path / "work" / "images"
    shutil.copytree(study / "images", images)
    (images / FOLDER_MARKER).write_text("")
    before = snapshot(tmp_path / "work")
    cases = [(images, images, r"holds the input"),
             (images, images / "masks", r"lies inside the images folder"),
             (images, tmp_path / "work", r"holds the input")]
    for source, out, problem in cases:
        with pytest.raises(SystemExit, match=rf"^error: --out .*{problem}"):
            folder_predict(study, source, out)
    cache = tmp_path / "cache"                        # a stack: --out beside images.npy
    shutil.copytree(study / "cache", cache)
    (cache / FOLDER_MARKER).write_text("")
    cached = snapshot(cache)
    with pytest.raises(SystemExit, match=r"^error: --out .*holds the input .*images.npy"):
        predict.main(["--images", str(cache / "images.npy"), "--index", str(cache / "index.csv"),
                      "--checkpoint", "micro", "--prior", str(study / "seg" / "prior.json"),
                      "--out", str(cache / "raw.npy"), "--device", "cpu"])
    assert snapshot(tmp_path / "work") == before and snapshot(cache) == cached


@pytest.fixture(scope="module")
def outputs(study, tmp_path_factory):
    """Finished predict (two shards and whole) and postprocess folders of the study."""
    root = tmp_path_factory.mktemp("outputs")
    for k in range(2):
        run_predict(study, study / "seg", root / "shards" / f"{k}of2" / "raw.npy",
                    "--shard", f"{k}/2")
    run_predict(study, study / "seg", root / "masks" / "raw.npy")
    postprocess.main(["--masks", str(root / "masks" / "raw.npy"),
                      "--index", str(study / "cache" / "index.csv"), "--erode", "1",
                      "--out", str(root / "masks")])
    return root


def cli_into(stage, study, outputs, out):
    """Run one cxrseg CLI on finished inputs with its outputs going to `out`."""
    seg, masks = study / "seg", outputs / "masks"
    if stage == "split":
        split.main([*data_flags(study), "--out", str(out / "splits.csv")])
    elif stage == "finetune":
        run_finetune(study, out, "--epochs", "0")
    elif stage == "evaluate":
        run_evaluate(study, seg, "--out", str(out / "eval.csv"))
    elif stage == "predict":
        run_predict(study, seg, out / "raw.npy")
    elif stage == "gather":
        gather.main(["--shards", *(str(outputs / "shards" / f"{k}of2") for k in range(2)),
                     "--out", str(out / "raw.npy")])
    elif stage == "postprocess":
        postprocess.main(["--masks", str(masks / "raw.npy"),
                          "--index", str(study / "cache" / "index.csv"), "--out", str(out)])
    elif stage == "figures":
        figures.main(["--seg", str(seg), "--cache", str(study / "cache"), "--masks", str(masks),
                      "--out", str(out)])


STAGES = ["split", "finetune", "evaluate", "predict", "gather", "postprocess", "figures"]


@pytest.mark.parametrize("stage", STAGES)
def test_every_cli_refuses_a_foreign_out_folder_with_a_clean_error(stage, study, outputs,
                                                                   tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's notes\n")
    with pytest.raises(SystemExit) as stop:
        cli_into(stage, study, outputs, foreign)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "notes.txt" in message, message
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_figures_record_their_run_and_replace_only_their_own_files(study, outputs, tmp_path):
    out = tmp_path / "figures"
    masks = outputs / "masks"
    base = ["--seg", str(study / "seg"), "--cache", str(study / "cache"), "--masks", str(masks),
            "--out", str(out)]
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


# ----------------------------------------------------------------------------- 2. gather by content

def test_predict_records_what_its_masks_depend_on(study, outputs):
    done = json.loads((outputs / "masks" / "done_predict.json").read_text())
    seg, cache = study / "seg", study / "cache"
    names = [line.split(",", 1)[1] for line in (cache / "index.csv").read_text().split()[1:]]
    assert done["checkpoint_id"] == f"sha256:{sha256(seg / 'best.pt')}"
    assert done["prior_sha256"] == sha256(seg / "prior.json")
    assert done["images_sha256"] == sha256(cache / "images.npy")
    assert done["index_sha256"] == done["rows_sha256"] == index_rows_sha256(enumerate(names))
    chosen = json.loads((seg / "done_evaluate.json").read_text())["thresholds"]
    assert done["threshold"] == chosen[str(seg / "best.pt")]
    shard = json.loads((outputs / "shards" / "1of2" / "done_predict.json").read_text())
    assert {k: shard[k] for k in MASK_FACTS} == {k: done[k] for k in MASK_FACTS}
    assert shard["rows_sha256"] == index_rows_sha256((i, names[i])
                                                     for i in range(len(names) // 2, len(names)))


def test_gathered_record_equals_the_unsharded_one_on_content(outputs, tmp_path):
    gather.main(["--shards", *(str(outputs / "shards" / f"{k}of2") for k in range(2)),
                 "--out", str(tmp_path / "raw.npy")])
    joined = json.loads((tmp_path / "done_predict.json").read_text())
    whole = json.loads((outputs / "masks" / "done_predict.json").read_text())
    for fact in [*MASK_FACTS, "rows_sha256", "images", "empty", "degenerate"]:
        assert joined[fact] == whole[fact], fact


def test_gather_refuses_shards_of_two_different_models(study, tmp_path):
    seg = copy_seg(study, tmp_path)
    run_predict(study, seg, tmp_path / "s0" / "raw.npy", "--shard", "0/2")
    run_finetune(study, seg, "--seed", "1")          # seg/ fine-tuned again, then re-evaluated
    run_evaluate(study, seg)
    run_predict(study, seg, tmp_path / "s1" / "raw.npy", "--shard", "1/2")
    with pytest.raises(SystemExit, match=r"^error: .*s1: made from another checkpoint .*"
                                         r"checkpoint_id: sha256:"):
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


def test_gather_accepts_paths_spelled_differently_and_checks_each_index(study, outputs, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(study)
    relative = ["--images", "cache/images.npy", "--index", "cache/index.csv",
                "--checkpoint", "seg/best.pt", "--prior", "seg/prior.json",
                "--threshold-from", "./seg/eval.csv"]
    run_predict(study, study / "seg", tmp_path / "s1" / "raw.npy", "--shard", "1/2", *relative)
    shards = [str(outputs / "shards" / "0of2"), str(tmp_path / "s1")]
    gather.main(["--shards", *shards, "--out", str(tmp_path / "m" / "raw.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "raw.npy"),
                                  np.load(outputs / "masks" / "raw.npy"))
    index = tmp_path / "s1" / "index.csv"
    index.write_text(index.read_text().replace("x11.png", "x99.png"))
    with pytest.raises(SystemExit, match=r"^error: .*s1/index.csv: not the rows its "
                                         r"done_predict.json vouches for"):
        gather.main(["--shards", *shards, "--out", str(tmp_path / "m" / "raw.npy")])


def test_gather_refuses_a_shard_without_content_facts(outputs, tmp_path):
    shutil.copytree(outputs / "shards" / "1of2", tmp_path / "old")
    record = json.loads((tmp_path / "old" / "done_predict.json").read_text())
    del record["prior_sha256"]                              # as an older predict wrote it
    (tmp_path / "old" / "done_predict.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"^error: .*old: its done_predict.json does not record "
                                         r"prior_sha256"):
        gather.main(["--shards", str(outputs / "shards" / "0of2"), str(tmp_path / "old"),
                     "--out", str(tmp_path / "m" / "raw.npy")])


# ----------------------------------------------------------------------------- 3. threshold-from

def test_threshold_from_matches_the_checkpoint_by_content(study, tmp_path, monkeypatch):
    seg = copy_seg(study, tmp_path)
    run_evaluate(study, seg)                                 # evaluated as an absolute path
    chosen = json.loads((seg / "done_evaluate.json").read_text())["thresholds"]
    monkeypatch.chdir(tmp_path)
    predict.main(["--images", str(study / "cache" / "images.npy"),
                  "--index", str(study / "cache" / "index.csv"),
                  "--checkpoint", "../" + tmp_path.name + "/seg/best.pt",
                  "--prior", "seg/prior.json", "--threshold-from", "seg/eval.csv",
                  "--out", "masks/raw.npy", "--device", "cpu"])
    done = json.loads((tmp_path / "masks" / "done_predict.json").read_text())
    assert done["threshold"] == chosen[str(seg / "best.pt")]
    assert done["checkpoint_id"] == checkpoint_id(str(seg / "best.pt"))
    run_finetune(study, seg, "--seed", "1")                  # trained again, not re-evaluated
    with pytest.raises(SystemExit, match=r"^error: .*eval.csv: no validation rows for checkpoint "
                                         r"seg/best.pt \(sha256:.*weights differ"):
        predict.main(["--images", str(study / "cache" / "images.npy"),
                      "--index", str(study / "cache" / "index.csv"),
                      "--checkpoint", "seg/best.pt", "--prior", "seg/prior.json",
                      "--threshold-from", "seg/eval.csv", "--out", "masks2/raw.npy",
                      "--device", "cpu"])


def test_eval_csv_names_each_checkpoint_by_content(study):
    rows = (study / "seg" / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("checkpoint,checkpoint_id,dataset,part,threshold")
    assert all(f"sha256:{sha256(study / 'seg' / 'best.pt')}" in r for r in rows[1:])
    assert checkpoint_id("micro", seed=3) == "micro seed 3"


# ----------------------------------------------------------------------------- 4. --data

@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    make_pairs(root / "a", "a", seed=1)
    make_pairs(root / "b", "b", seed=2)
    one = ["--data", f"a={root / 'a' / 'images'}:{root / 'a' / 'masks'}"]
    split.main([*one, "--out", str(root / "seg" / "splits.csv")])
    return root, one + ["--data", f"b={root / 'b' / 'images'}:{root / 'b' / 'masks'}"]


@pytest.mark.parametrize("stage", ["finetune", "evaluate"])
def test_a_dataset_the_split_file_does_not_know_is_refused(two_sets, stage, tmp_path):
    root, both = two_sets
    splits = str(root / "seg" / "splits.csv")
    with pytest.raises(SystemExit, match=r"^error: .*splits.csv does not know dataset 'b': none "
                                         r"of its 12 pairs"):
        if stage == "finetune":
            finetune.main([*both, "--splits", splits, "--checkpoint", "micro",
                           "--out", str(tmp_path / "seg"), "--device", "cpu"])
        else:
            evaluate.main([*both, "--splits", splits, "--checkpoint", "micro",
                           "--out", str(tmp_path / "eval.csv"), "--device", "cpu"])
    assert not (tmp_path / "seg").exists() and not (tmp_path / "eval.csv").exists()


def test_pairs_added_after_the_split_are_refused_not_left_out(two_sets, tmp_path):
    root, both = two_sets
    shutil.copytree(root / "a", tmp_path / "a")
    for sub in ("images", "masks"):
        shutil.copy(tmp_path / "a" / sub / "a00.png", tmp_path / "a" / sub / "a99.png")
    with pytest.raises(SystemExit, match=r"^error: .*splits.csv: 1 of the 13 pairs of dataset "
                                         r"'a' have no row \(e.g. \['a99'\]\)"):
        evaluate.main(["--data", f"a={tmp_path / 'a' / 'images'}:{tmp_path / 'a' / 'masks'}",
                       "--splits", str(root / "seg" / "splits.csv"), "--checkpoint", "micro",
                       "--out", str(tmp_path / "eval.csv"), "--device", "cpu"])


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
    make_pairs(base, "c")
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


# ----------------------------------------------------------------------------- 5. augmentation

def test_augment_copies_must_go_with_augment_and_be_positive(study, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_finetune(study, tmp_path / "a", "--augment", "opacity", "--augment-copies", "0")
    assert stop.value.code == 2 and "argument --augment-copies" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"^error: --augment-copies 2 needs --augment"):
        run_finetune(study, tmp_path / "b", "--augment-copies", "2")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    run_finetune(study, tmp_path / "c", "--epochs", "0")
    recorded = json.loads((tmp_path / "c" / "done_finetune.json").read_text())["arguments"]
    assert recorded["augment"] == [] and recorded["augment_copies"] == 0


# ----------------------------------------------------------------------------- 6. degenerate

def test_degenerate_reason_names_small_constant_and_featureless_images():
    rng = np.random.default_rng(0)
    radiograph = rng.normal(120, 40, (MIN_SIDE, MIN_SIDE)).clip(0, 255).astype(np.uint8)
    assert degenerate_reason(radiograph) is None
    assert degenerate_reason(radiograph[:MIN_SIDE - 1]) == (
        f"smaller than {MIN_SIDE} px ({MIN_SIDE}x{MIN_SIDE - 1})")
    assert degenerate_reason(np.full((64, 64), 7, np.uint8)) == "constant (every pixel 7)"
    faint = (100 + rng.integers(0, MIN_SPREAD - 1, (64, 64))).astype(np.uint8)
    assert degenerate_reason(faint).startswith("featureless")
    speck = np.zeros((64, 64), np.uint8)
    speck[:2, :2] = 255                                     # 0.1% of the pixels: still blank
    assert degenerate_reason(speck).startswith("featureless")
    wide = (100 + rng.integers(0, MIN_SPREAD + 2, (64, 64))).astype(np.uint8)
    assert degenerate_reason(wide) is None
    assert degenerate_reason(radiograph.astype(np.float32) * 0) == "constant (every pixel 0.0)"


def test_predict_names_degenerate_images_and_postprocess_flags_them(study, tmp_path, capsys):
    stack = np.load(study / "cache" / "images.npy")
    names = [line.split(",", 1)[1] for line in
             (study / "cache" / "index.csv").read_text().split()[1:]]
    stack[3] = 0                                                         # a blank export
    stack[5] = 90 + (np.arange(stack[5].size) % 3).reshape(stack[5].shape)  # nearly blank
    write_stack(tmp_path / "cache", list(stack), names)
    out = tmp_path / "masks"
    predict.main(["--images", str(tmp_path / "cache" / "images.npy"),
                  "--index", str(tmp_path / "cache" / "index.csv"), "--checkpoint", "micro",
                  "--prior", str(study / "seg" / "prior.json"), "--threshold", "0.45",
                  "--out", str(out / "raw.npy"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert f"row 3 {names[3]}: constant (every pixel 0)" in err
    assert f"row 5 {names[5]}: featureless" in err and "2 of 12 images" in err
    assert np.load(out / "raw.npy").shape == stack.shape              # every mask written
    done = json.loads((out / "done_predict.json").read_text())
    assert [d["row"] for d in done["degenerate"]] == [3, 5]
    postprocess.main(["--masks", str(out / "raw.npy"), "--index", str(tmp_path / "cache" /
                                                                       "index.csv"),
                      "--erode", "1", "--out", str(out)])
    qc = (out / "qc.csv").read_text().splitlines()
    assert qc[0].split(",")[-1] == "note"
    assert "degenerate_image" in qc[4] and "degenerate image: constant (every pixel 0)" in qc[4]
    assert "degenerate_image" in qc[6] and "degenerate image: featureless" in qc[6]
    assert sum("degenerate" in line for line in qc) == 2


def test_predict_writes_a_mask_for_an_image_too_small_to_be_a_radiograph(study, tmp_path,
                                                                          capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(study / "images" / "x00.png", images / "x00.png")
    small = np.random.default_rng(0).integers(0, 255, (MIN_SIDE // 2, MIN_SIDE // 2))
    Image.fromarray(small.astype(np.uint8)).save(images / "tiny.png")
    folder_predict(study, images, tmp_path / "pngs")
    assert f"tiny.png: smaller than {MIN_SIDE} px" in capsys.readouterr().err
    assert Image.open(tmp_path / "pngs" / "raw" / "tiny.png").size == (MIN_SIDE // 2,
                                                                         MIN_SIDE // 2)
    assert (tmp_path / "pngs" / "raw" / "x00.png").is_file()
    qc = {r["image"]: r for r in read_csv(tmp_path / "pngs" / "qc.csv")}
    assert "degenerate_image" in qc["tiny.png"]["flag"].split(";")
    assert qc["tiny.png"]["note"].startswith("degenerate image: smaller than")
