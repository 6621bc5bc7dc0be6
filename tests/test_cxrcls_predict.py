"""cxrcls.predict on runs made here (random resnet18 weights, the records a finished run has) in a
synthetic work folder: the study's No Finding rule and the run's thresholds, the refusals around
masks, unreadable files, the cache the run was trained on, and --out. That its numbers equal a
trained run's own test predictions is checked on the tiny profile (tests/test_user_data.py)."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrcls import predict
from cxrcls.labels import LABELS
from cxrcls.models import build_model
from cxrseg.study_masks import PIPELINE_SIZE
from cxrstats.foundation.fileio import (FILE_HASHES, content_facts, file_sha256, read_csv,
                                        read_done, write_csv, write_done, write_file_hashes)
from cxrstats.foundation.imageio import write_png
from cxrstats.results import mask_record_identity
from synthetic_work import make_work

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

THRESHOLDS = [0.5, 0.45, 0.55, 0.5, 0.6, 0.4]
SIZE = PIPELINE_SIZE   # the cache's side: make segment's radii are those of the runs' masks


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


def segment_output(out, masks, folder="m15", extent="field", erode=5, fill_holes=False,
                   keep_largest=0, hashes=True, **facts):
    """`out` as cxrseg.predict leaves a folder of images' masks, in outline: <folder>/<stem>.png
    for each stem -> (H, W) 0/1 mask of `masks`, sha256.csv with each one's sha256 (not with
    `hashes` False: a folder of an older version), and done_predict.json listing them and
    vouching for sha256.csv, with the segmenter's `extent` and the settings that shaped the
    masks (the masks of the study's runs by default: erode 5, no clean-up). Returns
    out/<folder>."""
    written = {f"{folder}/{stem}.png": write_png(out / folder / f"{stem}.png",
                                                 mask.astype(np.uint8) * 255)
               for stem, mask in masks.items()}
    vouched = []
    if hashes:
        write_file_hashes(out, written)
        vouched = [FILE_HASHES]
        facts.update(content_facts(out, vouched))
    arguments = {"images": "cxrs", "fill_holes": fill_holes, "keep_largest": keep_largest}
    write_done(out, arguments, [*written, *vouched], done="done_predict.json", extent=extent,
               erode=erode, dilate=[15], **facts)
    return out / folder


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A synthetic work folder (cache of the study's side, masks of extent field), an original and
    an m15 run, and its first 6 cache images as PNG files with their m15 masks as `make segment`
    writes them."""
    root = tmp_path_factory.mktemp("predict")
    work = make_work(root / "work", n=12, size=SIZE)
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
    segment_output(tmp_path / "seg", {"img0": np.ones((20, SIZE)), **{f"img{i}": m15[i]
                                                                     for i in range(1, 6)}})
    with pytest.raises(SystemExit, match=rf"img0.png: mask size {SIZE}x20 differs from image"):
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
    raw = segment_output(tmp_path / "raw_only", masks, folder="raw")
    with pytest.raises(SystemExit, match=rf"--masks {raw}: holds raw/ masks, but the run's "
                                         r"input 'm15' needs the m15/ folder"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", raw)
    m50 = segment_output(tmp_path / "other_radius", masks, folder="m50")
    with pytest.raises(SystemExit, match=rf"--masks {m50}: masks of dilate 50 px .*but the run "
                                         r"was trained on masks of dilate 15 px"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", m50)
    (tmp_path / "other_radius" / "m15").mkdir()        # a folder the record does not list
    with pytest.raises(SystemExit, match=r"done_predict.json lists no m15/ masks"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", tmp_path / "other_radius" / "m15")
    full = segment_output(tmp_path / "full", masks, extent="full")
    with pytest.raises(SystemExit, match=rf"--masks {full}: masks of lung extent full .*trained "
                                         r"on masks of extent field"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", full)
    assert not (tmp_path / "p.csv").exists()


def distinct_masks(study, out):
    """A make segment output folder whose six m15 masks differ from image to image (the
    synthetic work folder's are alike): its m15/."""
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    return segment_output(out, {f"img{i}": np.roll(m15[i], 8 * i, axis=1) for i in range(6)})


@pytest.mark.parametrize("change", ["edited", "swapped", "older"])
def test_a_mask_changed_after_make_segment_is_refused_naming_it(study, tmp_path, change):
    """A mask PNG edited by hand, swapped with another image's, or left by an older run under the
    same name: each a valid mask of the image's size, so only its bytes tell; refused when read,
    naming the file and make segment, and no predictions are written."""
    masks = distinct_masks(study, tmp_path / "seg")
    target = masks / "img3.png"
    if change == "edited":
        mask = np.asarray(Image.open(target)).copy()
        mask[:8] = 255 - mask[:8]
        Image.fromarray(mask).save(target)
    elif change == "swapped":
        shutil.copyfile(masks / "img1.png", target)
    else:
        Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(target)
    assert np.asarray(Image.open(target)).shape == (SIZE, SIZE)
    with pytest.raises(SystemExit, match=rf"{target}: changed since the mask prediction \(make "
                                         r"segment\) wrote it .*re-run the mask prediction"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", masks)
    assert not (tmp_path / "p.csv").exists()


def test_a_mask_is_hashed_from_the_bytes_decoded_read_once(study, tmp_path, monkeypatch):
    """Each mask file is read once and decoded from those bytes, never opened again by path: the
    bytes checked are the bytes used."""
    read, by_path = [], []
    read_bytes, image_open = Path.read_bytes, Image.open

    def counted_read(path):
        read.append(path)
        return read_bytes(path)

    def counted_open(fp, *args, **kwargs):
        if isinstance(fp, (str, Path)):
            by_path.append(Path(fp))
        return image_open(fp, *args, **kwargs)
    monkeypatch.setattr(Path, "read_bytes", counted_read)
    monkeypatch.setattr(Image, "open", counted_open)
    run_predict(study, "m15", tmp_path / "p.csv", "--masks", study["masks"])
    assert sorted(p.name for p in read if p.parent == study["masks"]) == \
        [f"img{i}.png" for i in range(6)]
    assert not [p for p in by_path if p.parent == study["masks"]]


def test_sha256_csv_is_vouched_for_and_needed(study, tmp_path):
    """sha256.csv edited to fit a changed mask is refused (done_predict.json vouches for it); a
    folder without one (an older version's) is refused: its masks cannot be checked by content."""
    masks = distinct_masks(study, tmp_path / "seg")
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(masks / "img3.png")
    sidecar = masks.parent / FILE_HASHES
    rows = read_csv(sidecar)
    write_csv(sidecar, ["file", "sha256"], [[r["file"], file_sha256(masks.parent / r["file"])]
                                            for r in rows])
    with pytest.raises(SystemExit, match=rf"{sidecar}: changed since the mask prediction"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", masks)
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    older = segment_output(tmp_path / "older", {f"img{i}": m15[i] for i in range(6)},
                           hashes=False)
    with pytest.raises(SystemExit, match=r"done_predict.json: vouches for no sha256.csv .*older "
                                         r"version .*re-run the mask prediction \(make segment\)"):
        run_predict(study, "m15", tmp_path / "p.csv", "--masks", older)
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
    assert predict.cache_size_of(run, record) == SIZE
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


def test_masks_shaped_otherwise_than_the_runs_are_refused_naming_both_records(study, tmp_path):
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    masks = {f"img{i}": m15[i] for i in range(6)}
    trained = (rf"{study['work'] / 'masks' / 'done_predict.json'}, "
               rf"{study['work'] / 'masks' / 'done_postprocess.json'}")
    remedy = (r"Segment the images again with --erode 5 --dilate 15 --no-fill-holes "
              r"--keep-largest 0 .*give its m15/ folder")
    for name, setting, message in [("erode", {"erode": 0}, r"erode 0 px .*erode 5 px"),
                                   ("holes", {"fill_holes": True}, r"fill_holes True .*False"),
                                   ("pieces", {"keep_largest": 2}, r"keep_largest 2 .*0"),
                                   ("unrecorded", {"erode": None}, r"erode not recorded")]:
        given = segment_output(tmp_path / name, masks, **setting)
        record = tmp_path / name / "done_predict.json"
        with pytest.raises(SystemExit, match=rf"--masks {given}: masks of {message}") as error:
            run_predict(study, "m15", tmp_path / "p.csv", "--masks", given)
        assert re.search(rf"\({record}\), but the run was trained on .*\({trained}\)",
                         str(error.value)), name
        assert re.search(remedy, str(error.value)), name
    assert not (tmp_path / "p.csv").exists()


def test_radii_are_compared_in_pixels_of_the_runs_cache(study):
    """make segment's radii are pixels of a 512-px side scaled to the image: at a 64-px cache its
    m15 is dilated by 2 px, not the 15 px of the run's m15; --dilate 116 gives 15 px there."""
    trained = predict.MaskRecord("field", {"erode": 1, "dilate": 15, "fill_holes": False,
                                           "keep_largest": 0}, predict.segmenter_of({}), "masks")
    record = {"extent": "field", "erode": 5, "arguments": {"fill_holes": False, "keep_largest": 0}}
    found = predict.segmented_masks(study["root"] / "seg" / "m15", record, 64)
    assert (found.shape["erode"], found.shape["dilate"]) == (1, 2)
    with pytest.raises(ValueError, match=r"dilate 2 px .*dilate 15 px .*run's 64-px images\. "
                                         r"Segment the images again with --erode 4 --dilate 116 "
                                         r".*give its m116/ folder"):
        predict.compare_masks(study["root"] / "seg" / "m15", found, trained, 64)
    record["erode"] = 4
    found = predict.segmented_masks(study["root"] / "seg" / "m116", record, 64)
    predict.compare_masks(study["root"] / "seg" / "m116", found, trained, 64)
    at_1024 = dict(trained.shape, dilate=15)
    assert "cannot make these for 1024-px images" in predict.remedy(at_1024, 1024)


def test_the_clean_up_of_both_mask_stages_counts_and_overlay_masks_have_no_radii(study, tmp_path):
    filled = {"arguments": {"fill_holes": True, "keep_largest": 0}}
    pieces = {"arguments": {"fill_holes": False, "keep_largest": 2}}
    assert predict.cleaning(filled, pieces) == {"fill_holes": True, "keep_largest": 2}
    assert predict.cleaning(pieces, {"arguments": {"fill_holes": False, "keep_largest": 3}}) == \
        {"fill_holes": False, "keep_largest": 2}
    assert predict.cleaning(filled, {"arguments": {}}) == {"fill_holes": None,
                                                            "keep_largest": None}
    run = study["runs"]["m15"]
    trained = predict.trained_masks(run, read_done(run), "overlay")   # WORK/masks/raw.npy's
    assert trained.shape == {"erode": None, "dilate": None, "fill_holes": False,
                             "keep_largest": 0}
    raw = segment_output(tmp_path / "seg", {"img0": np.ones((4, 4))}, folder="raw",
                         fill_holes=True)
    found = predict.segmented_masks(raw, read_done(tmp_path / "seg", "done_predict.json"), SIZE)
    with pytest.raises(ValueError, match=r"fill_holes True .*fill_holes False .*Segment the "
                                         r"images again with --no-fill-holes --keep-largest 0 "
                                         r"and give its raw/ folder"):
        predict.compare_masks(raw, found, trained, SIZE)


def test_masks_of_another_segmenter_are_named_not_refused(study, tmp_path, capsys):
    m15 = np.load(study["work"] / "masks" / "m15.npy")
    masks = segment_output(tmp_path / "seg", {f"img{i}": m15[i] for i in range(6)},
                           checkpoint_id="sha256:mine", threshold=0.4)
    rows = run_predict(study, "m15", tmp_path / "p.csv", "--masks", masks)
    assert len(rows) == 6
    err = capsys.readouterr().err
    assert f"note: --masks {masks} were made by another segmenter" in err
    assert "checkpoint_id sha256:mine vs None; threshold 0.4 vs None" in err


def test_masks_post_processed_again_with_more_radii_keep_the_run(study, tmp_path):
    """make tightness post-processes WORK's masks again with more radii: done_postprocess.json
    gets other arguments, m15.npy the same bytes. A run that recorded both is still applied with
    its own masks' record; once m15.npy holds other bytes the record is not the run's."""
    shape = {"n": 12, "size": SIZE}
    work = make_work(tmp_path / "work", radii=(15, 50), **shape)
    run = make_run(work, "m15", read_done(work / "cache")["arguments_hash"])
    record = read_done(run)
    masks_record = read_done(work / "masks", "done_postprocess.json")
    write_done(run, record["arguments"], record["outputs"],
               inputs={**record["inputs"], "masks/done_postprocess.json":
                       mask_record_identity(masks_record)},
               mask_sha256={"masks/m15.npy": file_sha256(work / "masks" / "m15.npy")})
    given = ["--run", str(run), "--images", str(study["images"]), "--masks", str(study["masks"]),
             "--device", "cpu", "--out"]
    predict.main([*given, str(tmp_path / "before.csv")])
    make_work(work, radii=(0, 15, 30, 50, 100), **shape)        # the same m15.npy, more radii
    assert read_done(work / "masks", "done_postprocess.json") != masks_record
    predict.main([*given, str(tmp_path / "after.csv")])
    assert read_csv(tmp_path / "after.csv") == read_csv(tmp_path / "before.csv")
    m15 = np.load(work / "masks" / "m15.npy")
    np.save(work / "masks" / "m15.npy", 1 - m15)                 # made again, other masks
    with pytest.raises(SystemExit, match=r"the lung masks it was trained on "
                                         r"\(masks/done_postprocess.json .*was not found"):
        predict.main([*given, str(tmp_path / "other.csv")])


def test_thresholds_csv_is_read_by_the_one_reader_the_report_uses(tmp_path):
    """A NaN threshold would flag nothing (score >= nan is False): refused, by the reader the
    report uses (cxrstats.runs.read_thresholds), naming the file."""
    path = tmp_path / "thresholds.csv"
    write_csv(path, ["label", "threshold", "val_f1"],
              [[label, "nan" if label == "Edema" else 0.5, 0.5] for label in LABELS])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*NaN"):
        predict.read_thresholds(path)
    write_csv(path, ["label", "threshold", "val_f1"], [[label, t, 0.5] for label, t in
                                                       zip(LABELS, THRESHOLDS)])
    np.testing.assert_array_equal(predict.read_thresholds(path), THRESHOLDS)


def test_a_run_under_a_linked_runs_folder_is_found_in_its_own_work_folder(tmp_path):
    """runs/ linked to another disk: the run's work folder is the one its path lies in, not the
    link's target (a moved work folder's recorded --work no longer exists)."""
    (tmp_path / "disk" / "runs" / "resnet50_m15" / "split0").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "runs").symlink_to(tmp_path / "disk" / "runs")
    folder = tmp_path / "work" / "runs" / "resnet50_m15" / "split0"
    found = predict.work_folders(folder, {"arguments": {"work": "/moved/away"}})
    assert found[0] == tmp_path / "work"
