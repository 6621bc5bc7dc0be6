"""cxrcls.predict on runs made here (random resnet18 weights, the records a finished run has) in a
synthetic work folder: the study's No Finding rule and the run's thresholds, the refusals around
masks, unreadable files, the cache the run was trained on, and --out. That its numbers equal a
trained run's own test predictions is checked on the tiny profile (tests/test_user_data.py)."""
import numpy as np
import pytest
import torch
from PIL import Image

from cxrcls import predict
from cxrcls.labels import LABELS
from cxrcls.models import build_model
from cxrstats.foundation.fileio import read_csv, read_done, write_csv, write_done
from synthetic_work import make_work

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

THRESHOLDS = [0.5, 0.45, 0.55, 0.5, 0.6, 0.4]


def make_run(work, kind, cache_hash):
    """runs/resnet18_<kind>/split0 with best.pt, thresholds.csv and done.json."""
    run = work / "runs" / f"resnet18_{kind}" / "split0"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": build_model("resnet18").state_dict(), "arch": "resnet18"},
               run / "best.pt")
    write_csv(run / "thresholds.csv", ["label", "threshold", "val_f1"],
              [[label, t, 0.5] for label, t in zip(LABELS, THRESHOLDS)])
    arguments = {"work": str(work), "arch": "resnet18", "train_input": kind, "eval_input": None,
                 "image_size": 16, "overlay_thickness": 2}
    write_done(run, arguments, ["best.pt", "thresholds.csv"], inputs={"cache": cache_hash})
    return run


def segment_output(out, masks, folder="m15", extent="field"):
    """`out` as cxrseg.predict leaves a folder of images' masks, in outline: <folder>/<stem>.png
    for each stem -> (H, W) 0/1 mask of `masks`, and done_predict.json listing them, with the
    segmenter's `extent`. Returns out/<folder>."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    for stem, mask in masks.items():
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / folder / f"{stem}.png")
    write_done(out, {"images": "cxrs"}, [f"{folder}/{stem}.png" for stem in masks],
               done="done_predict.json", extent=extent, dilate=[15])
    return out / folder


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A synthetic work folder (masks of extent field), an original and an m15 run, and its first
    6 cache images as PNG files with their m15 masks as `make segment` writes them."""
    root = tmp_path_factory.mktemp("predict")
    work = make_work(root / "work", n=12, size=32)
    cache_hash = read_done(work / "cache")["arguments_hash"]
    runs = {kind: make_run(work, kind, cache_hash) for kind in ("original", "m15")}
    images = root / "cxrs"
    images.mkdir()
    stack, m15 = np.load(work / "cache" / "images.npy"), np.load(work / "masks" / "m15.npy")
    for i in range(6):
        Image.fromarray(stack[i]).save(images / f"img{i}.png")
    masks = segment_output(root / "seg", {f"img{i}": m15[i] for i in range(6)})
    return {"work": work, "runs": runs, "images": images, "masks": masks, "root": root}


def run_predict(study, kind, out, *extra):
    predict.main(["--run", str(study["runs"][kind]), "--images", str(study["images"]),
                  "--out", str(out), "--device", "cpu", *map(str, extra)])
    return read_csv(out)


def test_probabilities_no_finding_and_labels_follow_the_study_and_the_run(study, tmp_path):
    rows = run_predict(study, "original", tmp_path / "p.csv")
    assert [r["image"] for r in rows] == [f"img{i}.png" for i in range(6)]
    assert list(rows[0]) == predict.COLUMNS
    probs = np.array([[float(r[f"prob_{label}"]) for label in LABELS] for r in rows])
    np.testing.assert_allclose(probs[:, 5], 1 - probs[:, :5].max(axis=1), atol=1e-7)
    labels = np.array([[int(r[f"label_{label}"]) for label in LABELS] for r in rows])
    np.testing.assert_array_equal(labels, (probs >= np.array(THRESHOLDS)).astype(int))
    masked = run_predict(study, "m15", tmp_path / "m.csv", "--masks", study["masks"])
    assert [r["prob_Mass"] for r in masked] != [r["prob_Mass"] for r in rows]


def test_masks_are_required_matched_by_stem_and_of_the_image_size(study, tmp_path):
    with pytest.raises(SystemExit, match=r"input 'm15' needs lung masks: give --masks"):
        run_predict(study, "m15", tmp_path / "p.csv")
    with pytest.raises(SystemExit, match=r"input 'original' uses no masks"):
        run_predict(study, "original", tmp_path / "p.csv", "--masks", study["masks"])
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    masks = segment_output(tmp_path / "seg", {f"img{i}": m15[i] for i in range(1, 6)})
    (masks / "img0.png").write_bytes((study["masks"] / "img0.png").read_bytes())  # not listed
    with pytest.raises(SystemExit, match=r"no mask for image img0.png"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", masks)
    segment_output(tmp_path / "seg", {"img0": np.ones((20, 32)), **{f"img{i}": m15[i]
                                                                   for i in range(1, 6)}})
    with pytest.raises(SystemExit, match=r"img0.png: mask size 32x20 differs from image"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", masks)
    assert not (tmp_path / "p.csv").exists()


def test_masks_must_be_a_finished_segment_output_of_the_runs_input_and_extent(study, tmp_path):
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    masks = {f"img{i}": m15[i] for i in range(6)}
    loose = tmp_path / "loose" / "m15"                 # PNGs with the right stems, no record
    loose.mkdir(parents=True)
    for path in study["masks"].iterdir():
        (loose / path.name).write_bytes(path.read_bytes())
    with pytest.raises(SystemExit, match=rf"--masks {loose}: not the masks of a finished "
                                         r"cxrseg.predict run .*no done_predict.json"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", loose)
    m50 = segment_output(tmp_path / "other_radius", masks, folder="m50")
    with pytest.raises(SystemExit, match=rf"--masks {m50}: holds m50/ masks, but the run's "
                                         r"input 'm15' needs the m15/ folder"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", m50)
    (tmp_path / "other_radius" / "m15").mkdir()        # a folder the record does not list
    with pytest.raises(SystemExit, match=r"done_predict.json lists no m15/ masks"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", tmp_path / "other_radius" / "m15")
    full = segment_output(tmp_path / "full", masks, extent="full")
    with pytest.raises(SystemExit, match=rf"--masks {full}: masks of lung extent full .*trained "
                                         r"on masks of extent field"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", full)
    assert not (tmp_path / "p.csv").exists()


def test_an_unreadable_image_is_named_and_left_out_even_without_a_mask(study, tmp_path, capsys):
    images = tmp_path / "cxrs"
    images.mkdir()
    for path in study["images"].iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    predict.main(["--run", str(study["runs"]["m15"]), "--images", str(images),
                  "--masks", str(study["masks"]), "--out", str(tmp_path / "p.csv"),
                  "--device", "cpu"])
    assert f"skipped {images / 'broken.png'}: cannot read image" in capsys.readouterr().err
    assert [r["image"] for r in read_csv(tmp_path / "p.csv")] == [f"img{i}.png" for i in range(6)]


def test_the_cache_the_run_was_trained_on_gives_the_size(study, tmp_path):
    run = study["runs"]["original"]
    record = read_done(run)
    assert predict.cache_size_of(run, record) == 32
    other = dict(record, inputs={"cache": "another cache"})
    with pytest.raises(FileNotFoundError, match=r"give --cache-size S"):
        predict.cache_size_of(run, other)


def test_out_is_never_a_file_it_did_not_write(study, tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own,table\n")
    with pytest.raises(SystemExit, match=r"is not a predictions file of cxrcls.predict"):
        run_predict(study, "original", notes)
    assert notes.read_text() == "my,own,table\n"
    run_predict(study, "original", tmp_path / "p.csv")
    run_predict(study, "original", tmp_path / "p.csv")   # its own file is replaced
