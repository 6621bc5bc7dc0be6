"""cxrseg.predict on a folder of radiographs (cxrseg.predict_folder): the study's m<r> masks scaled
to each image's size by postprocess's rule, the views asked for, unreadable files skipped and
recorded, a re-run replacing the previous run's files (a killed run's too). A random micro model
with a low threshold (every mask non-empty) is enough: what is checked is what happens around the
segmenter."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

from cxrseg import predict
from cxrseg.postprocess import process_mask
from cxrseg.predict_folder import FolderRun
from cxrseg.prompts import Prior
from cxrseg.segmenter import Resolved
from cxrseg.study_masks import DILATE_RADII, ERODE_RADIUS, scale_radius
from cxrseg.records import PREDICT
from cxrstats.foundation.fileio import (FILE_HASHES, IncompleteRunError, file_sha256, read_csv,
                                        read_done, vouched_files)
from synthetic_pairs import write_stack

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_scale_radius_keeps_the_margin_of_the_512_px_masks():
    assert scale_radius(15, (512, 512)) == 15 and scale_radius(15, (2048, 1800)) == 60
    assert scale_radius(5, (64, 48)) == 1 and scale_radius(50, (48, 64)) == 6  # longer side
    assert scale_radius(0, (3000, 3000)) == 0


def test_m_r_masks_are_postprocess_masks_with_radii_scaled_to_the_image(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (768, 1024)).astype(np.uint8)
    raw = np.zeros((768, 1024), np.uint8)
    raw[200:600, 150:450] = 1
    raw[200:600, 570:870] = 1
    args = argparse.Namespace(erode=None, dilate=None, masked=True, overlay=True)
    run = FolderRun(args, Resolved(None), tmp_path)
    for name in run.folders():
        (tmp_path / name).mkdir()
    run.add("film.png", image, raw, [0, 0, 9, 9], [1, 1, 8, 8])
    erode = scale_radius(ERODE_RADIUS, image.shape)
    radii = [scale_radius(r, image.shape) for r in DILATE_RADII]
    assert (erode, radii) == (10, [30, 100])
    _, expected, _ = process_mask(raw, erode, radii)
    for r, mask in zip(DILATE_RADII, expected):
        written = np.asarray(Image.open(tmp_path / f"m{r}" / "film.png"))
        np.testing.assert_array_equal(written, mask * 255)
        masked = np.asarray(Image.open(tmp_path / f"masked_m{r}" / "film.png"))
        np.testing.assert_array_equal(masked, np.where(mask, image, 0))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "raw" / "film.png")), raw * 255)
    view = np.asarray(Image.open(tmp_path / "overlay" / "film.png"))
    assert view.shape == (768, 1024, 3) and (view == [0, 255, 0]).all(axis=2).any()
    qc = dict(zip(run.qc_columns, run.qc_rows[0]))
    assert (qc["width"], qc["height"], qc["erode_px"], qc["m15_px"], qc["m50_px"]) == (
        1024, 768, 10, 30, 100)
    assert qc["flag"] == "ok" and qc["action"] == "kept"
    assert sorted(run.outputs) == sorted(f"{d}/film.png" for d in run.folders())


def folder_predict(images, out, prior, *extra):
    predict.main(["--images", str(images), "--checkpoint", "micro", "--prior", str(prior),
                  "--threshold", "0.01", "--out", str(out), "--device", "cpu", *extra])


def test_unreadable_files_are_skipped_named_and_recorded_and_a_rerun_replaces_the_files(
        tmp_path, capsys):
    images = tmp_path / "cxrs"
    images.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 40)).astype(np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 60, 3)).astype(np.uint8)).save(images / "b.jpg")
    (images / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    out = tmp_path / "masks"
    folder_predict(images, out, prior, "--dilate", "0", "30")
    err = capsys.readouterr().err
    assert f"skipped {images / 'c.png'}: cannot read image" in err
    done = json.loads((out / "done_predict.json").read_text())
    assert [s["image"] for s in done["skipped"]] == ["c.png"] and done["images"] == 2
    assert done["dilate"] == [0, 30] and done["settings"]["threshold"] == "--threshold"
    assert sorted(p.name for p in (out / "m30").glob("*.png")) == ["a.png", "b.png"]
    assert np.asarray(Image.open(out / "m0" / "b.png")).shape == (36, 60)
    assert [r["image"] for r in read_csv(out / "qc.csv")] == ["a.png", "b.jpg"]
    assert not (out / "m15").exists() and not (out / "raw" / "c.png").exists()

    (images / "a.png").unlink()
    folder_predict(images, out, prior)
    assert sorted(p.name for p in (out / "raw").glob("*.png")) == ["b.png"]
    assert not list((out / "m30").glob("*.png"))   # the previous run's files went first
    assert json.loads((out / "done_predict.json").read_text())["dilate"] == list(DILATE_RADII)


def test_folder_only_flags_are_refused_for_a_stack(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((2, 40, 40), np.uint8))
    (tmp_path / "index.csv").write_text("row,image\n0,a\n1,b\n")
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    with pytest.raises(SystemExit, match=r"error: --masked: only for a folder of images"):
        predict.main(["--images", str(tmp_path / "s.npy"), "--index", str(tmp_path / "index.csv"),
                      "--checkpoint", "micro", "--prior", str(prior), "--masked",
                      "--out", str(tmp_path / "m" / "raw.npy"), "--device", "cpu"])


def _killed_after(monkeypatch, calls: int, target, name: str):
    """Make `target.name` raise KeyboardInterrupt on its call number `calls` + 1."""
    original, seen = getattr(target, name), []

    def killed(*args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(target, name, killed)


def _two_folders(tmp_path, first_names, second_names, seed):
    """Two folders of random 40x40 PNGs named `first_names`, `second_names`, and a prior."""
    first, second = tmp_path / "first", tmp_path / "second"
    rng = np.random.default_rng(seed)
    for folder, names in ((first, first_names), (second, second_names)):
        folder.mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 256, (40, 40)).astype(np.uint8)).save(
                folder / f"{name}.png")
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    return first, second, prior


def test_a_killed_run_leaves_no_masks_in_the_next_runs_folder(tmp_path, monkeypatch):
    first, second, prior = _two_folders(tmp_path, ["a", "b", "c"], ["d"], seed=2)
    out = tmp_path / "masks"
    _killed_after(monkeypatch, 2, FolderRun, "add")
    with pytest.raises(KeyboardInterrupt):
        folder_predict(first, out, prior, "--batch-size", "1")
    assert (out / "raw" / "a.png").is_file() and not (out / "done_predict.json").exists()
    monkeypatch.undo()
    (out / "raw" / "mine.png").write_bytes(b"a file no toolkit record names")
    folder_predict(second, out, prior)
    assert sorted(p.name for p in (out / "raw").glob("*.png")) == ["d.png", "mine.png"]
    assert not list((out / "m15").glob("[abc].png")) and not (out / "started_predict.json").exists()


def test_a_mask_deleted_by_hand_does_not_keep_the_rest_of_a_finished_run(tmp_path):
    """The next run removes every file the finished run's record lists that still exists."""
    first, second, prior = _two_folders(tmp_path, ["a", "b"], ["c"], seed=4)
    out = tmp_path / "masks"
    folder_predict(first, out, prior)
    (out / "raw" / "a.png").unlink()
    folder_predict(second, out, prior)
    assert sorted(p.name for p in (out / "raw").glob("*.png")) == ["c.png"]
    assert sorted(p.name for p in (out / "m15").glob("*.png")) == ["c.png"]


def test_a_killed_stack_prediction_into_a_folder_leaves_no_masks_for_the_next(tmp_path,
                                                                             monkeypatch):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 40)).astype(np.uint8) for _ in range(3)]
    write_stack(tmp_path / "one", images, ["a.png", "b.png", "c.png"])
    write_stack(tmp_path / "two", images[:1], ["d.png"])
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    out = tmp_path / "masks"

    def stack_predict(stack, *extra):
        predict.main(["--images", str(stack / "images.npy"), "--index", str(stack / "index.csv"),
                      "--checkpoint", "micro", "--prior", str(prior), "--threshold", "0.01",
                      "--out", str(out), "--device", "cpu", *extra])
    _killed_after(monkeypatch, 2, predict, "degenerate_reason")   # called once per mask
    with pytest.raises(KeyboardInterrupt):
        stack_predict(tmp_path / "one", "--batch-size", "1")
    assert (out / "a.png").is_file() and not (out / "done_predict.json").exists()
    monkeypatch.undo()
    stack_predict(tmp_path / "two")
    assert sorted(p.name for p in out.glob("*.png")) == ["d.png"]


def test_a_users_folder_as_copied_from_a_phone_and_a_mac(tmp_path, capsys):
    """A turned phone JPEG is segmented upright (its masks the size it is shown at); macOS's
    `._` companion is not an image; a 16-bit RGB PNG is skipped with its reason, not segmented
    as the near-black picture PIL would make of it."""
    from test_foundation_imageio import exif, write_png
    images = tmp_path / "cxrs"
    images.mkdir()
    stored = np.random.default_rng(2).integers(0, 256, (30, 44)).astype(np.uint8)
    Image.fromarray(stored).save(images / "turned.jpg", exif=exif(6))
    (images / "._turned.jpg").write_bytes(b"\0\x05\x16\x07\0\x02\0\0Mac OS X" + bytes(40))
    write_png(images / "rgb16.png", np.full((32, 32, 3), 4095, np.uint16), colour_type=2)
    prior = tmp_path / "prior.json"
    Prior(box=[0.1, 0.1, 0.9, 0.9], points=[]).save(prior)
    folder_predict(images, tmp_path / "masks", prior)
    assert np.asarray(Image.open(tmp_path / "masks" / "raw" / "turned.png")).shape == (44, 30)
    done = json.loads((tmp_path / "masks" / "done_predict.json").read_text())
    assert [s["image"] for s in done["skipped"]] == ["rgb16.png"]
    assert done["skipped"][0]["reason"].startswith("RGB with 16 bits a sample")
    assert "._turned" not in capsys.readouterr().err


def test_every_png_written_is_listed_with_its_sha256_in_a_sidecar_the_record_vouches_for(
        tmp_path):
    """Folder and stack into a folder: sha256.csv holds the sha256 of each PNG's bytes as
    written (one row per PNG, not one entry per file in done_predict.json), the record vouches for
    sha256.csv by content, and a reader gets each mask's bytes back checked."""
    first, _, prior = _two_folders(tmp_path, ["a", "b"], [], seed=5)
    folder_out = tmp_path / "from_folder"
    folder_predict(first, folder_out, prior, "--masked", "--overlay")
    rng = np.random.default_rng(6)
    write_stack(tmp_path / "stack", [rng.integers(0, 256, (40, 40)).astype(np.uint8)
                                     for _ in range(2)], ["c.png", "d.png"])
    stack_out = tmp_path / "from_stack"
    predict.main(["--images", str(tmp_path / "stack" / "images.npy"), "--index",
                  str(tmp_path / "stack" / "index.csv"), "--checkpoint", "micro", "--prior",
                  str(prior), "--threshold", "0.01", "--out", str(stack_out), "--device", "cpu"])
    for out in (folder_out, stack_out):
        done = read_done(out, PREDICT)
        pngs = [name for name in done["outputs"] if name.endswith(".png")]
        rows = read_csv(out / FILE_HASHES)
        assert [r["file"] for r in rows] == pngs and len(pngs) in (2, 2 * 6)
        assert all(r["sha256"] == file_sha256(out / r["file"]) for r in rows)
        assert FILE_HASHES in done["outputs"] and done["content_files"] == [FILE_HASHES]
        assert not any(name.endswith(".png") for name in done["content_file_sha256"])
        vouched = vouched_files(out, done, PREDICT)
        assert vouched.read_bytes(pngs[0]) == (out / pngs[0]).read_bytes()
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(out / pngs[0])
        with pytest.raises(IncompleteRunError, match=rf"{out / pngs[0]}: changed since"):
            vouched.read_bytes(pngs[0])
