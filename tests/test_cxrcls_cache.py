"""Image cache: every pixel format gives the same gray image (through the one reader cxrseg uses
too); bad files, duplicates and unfinished cohorts are refused; re-runs are no-ops."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from cxrcls import cache
from cxrcls.split_data import load_split
from cxrstats.foundation.imageio import read_gray
from cxrseg.pairs import read_image
from cxrstats.foundation.fileio import (IncompleteRunError, content_facts, read_csv, read_done,
                                        write_csv, write_done, write_json)
from synthetic_work import made_again, make_work


def gray_image(seed=0, size=40):
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def write_formats(folder, gray):
    """The same gray picture as 8-bit gray, RGBA, RGB, 16-bit PNG and palette-free gray JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(folder / "gray.png")
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([gray] * 3)).save(folder / "rgb.png")
    gray = gray.copy()
    gray[0, :2] = 0, 255  # full range, so the 16-bit copy stretches back to the same values
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    sixteen.save(folder / "sixteen.png")
    Image.fromarray(gray).save(folder / "gray.jpg", quality=95)
    return ["gray.png", "rgba.png", "rgb.png", "sixteen.png", "gray.jpg"]


def write_cohort(path, names):
    """cohort.csv with its completion record, as cxrcls.cohort leaves it."""
    write_csv(path, ["image"], [[n] for n in names])
    write_done(path.parent, {}, [path.name])
    return path


def test_formats_give_the_same_gray_image(tmp_path):
    gray = gray_image()
    gray[0, :2] = 0, 255
    names = write_formats(tmp_path / "images" / "sub", gray)
    with Image.open(tmp_path / "images" / "sub" / "sixteen.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    assert cache.build_cache(names, tmp_path / "images", tmp_path / "cache", size=40, workers=1)
    array = np.load(tmp_path / "cache" / "images.npy", mmap_mode="r")
    assert array.shape == (5, 40, 40) and array.dtype == np.uint8
    for i in range(4):  # lossless formats: exact
        np.testing.assert_array_equal(array[i], gray)
    assert np.abs(array[4].astype(int) - gray).mean() < 8  # JPEG: close
    index = read_csv(tmp_path / "cache" / "index.csv", required=["row", "image"])
    assert [r["image"] for r in index] == names and [r["row"] for r in index] == list("01234")
    # Resizing is the same function of the gray image whatever the file format; 2 workers agree.
    assert cache.build_cache(names, tmp_path / "images", tmp_path / "small", size=24, workers=2)
    small = np.load(tmp_path / "small" / "images.npy")
    assert small.shape == (5, 24, 24)
    for i in range(1, 4):
        np.testing.assert_array_equal(small[i], small[0])
    np.testing.assert_array_equal(small[0], cache.resize_gray(gray, 24))


def test_corrupt_png_is_named(tmp_path):
    names = write_formats(tmp_path / "images", gray_image())
    data = (tmp_path / "images" / "gray.png").read_bytes()
    (tmp_path / "images" / "broken.png").write_bytes(data[: len(data) // 2])
    cohort = write_cohort(tmp_path / "cohort.csv", names + ["broken.png"])
    with pytest.raises(SystemExit, match="broken.png: cannot read image"):
        cache.main(["--cohort", str(cohort), "--images", str(tmp_path / "images"),
                    "--out", str(tmp_path / "cache"), "--size", "16", "--workers", "2"])
    assert not (tmp_path / "cache" / "images.npy").exists()
    assert not (tmp_path / "cache" / "images.npy.tmp").exists()


def test_second_run_does_nothing_until_an_input_changes(tmp_path, capsys):
    names = write_formats(tmp_path / "images", gray_image())
    cohort = write_cohort(tmp_path / "cohort.csv", names)
    argv = ["--cohort", str(cohort), "--images", str(tmp_path / "images"),
            "--out", str(tmp_path / "cache"), "--size", "16", "--workers", "1"]
    cache.main(argv)
    npy = tmp_path / "cache" / "images.npy"
    before = npy.stat().st_mtime_ns
    capsys.readouterr()
    cache.main(argv)
    assert "up to date" in capsys.readouterr().out
    assert npy.stat().st_mtime_ns == before
    # A changed input (new content and mtime) or a new size rebuilds.
    Image.fromarray(gray_image(seed=1)).save(tmp_path / "images" / "gray.png")
    os.utime(tmp_path / "images" / "gray.png", ns=(before + 10**9, before + 10**9))
    assert cache.build_cache(names, tmp_path / "images", tmp_path / "cache", size=16)
    np.testing.assert_array_equal(np.load(npy)[0], cache.resize_gray(gray_image(seed=1), 16))
    assert cache.build_cache(names, tmp_path / "images", tmp_path / "cache", size=8)
    assert np.load(npy).shape == (5, 8, 8)


def test_the_record_holds_the_content_of_the_decoded_images(tmp_path, capsys):
    names = write_formats(tmp_path / "images", gray_image())
    out, images = tmp_path / "cache", tmp_path / "images"
    assert cache.build_cache(names, images, out, size=16)
    first = read_done(out)
    facts = content_facts(out, ["index.csv", "images.npy"])
    assert {k: first[k] for k in facts} == facts
    later = os.stat(images / "gray.png").st_mtime_ns + 10**9
    os.utime(images / "gray.png", ns=(later, later))            # touched, same pixels: rebuilt
    assert cache.build_cache(names, images, out, size=16)
    assert read_done(out)["content_sha256"] == first["content_sha256"]
    Image.fromarray(gray_image(seed=1)).save(images / "gray.png")  # other pixels
    os.utime(images / "gray.png", ns=(later + 10**9, later + 10**9))
    assert cache.build_cache(names, images, out, size=16)
    assert read_done(out)["content_sha256"] != first["content_sha256"]
    record = read_done(out)
    del record["content_sha256"]                                 # a record without a content id
    write_json(out / "done.json", record)
    assert cache.build_cache(names, images, out, size=16)       # is not up to date: rebuilt
    assert read_done(out)["content_sha256"]


def test_a_cache_changed_since_it_was_written_is_made_again_not_kept(tmp_path, capsys):
    """images.npy edited (or copied from another run) after the cache finished: its inputs are
    unchanged, but the cache is not up to date: it is written again, not kept."""
    names = write_formats(tmp_path / "images", gray_image())
    out, images = tmp_path / "cache", tmp_path / "images"
    assert cache.build_cache(names, images, out, size=16)
    written = np.load(out / "images.npy")
    edited = written.copy()
    edited[0, 0, 0] ^= 1
    np.save(out / "images.npy", edited)
    with pytest.raises(IncompleteRunError, match=r"cache/images.npy: changed since the image "
                                                 r"cache wrote it"):
        read_done(out, what="image cache")
    assert cache.build_cache(names, images, out, size=16)
    assert np.array_equal(np.load(out / "images.npy"), written)
    assert not cache.build_cache(names, images, out, size=16)


def test_one_16bit_file_gives_the_same_uint8_for_segmentation_and_the_cache(tmp_path):
    """12-bit detector data in a 16-bit PNG: one rule (min-max) in both stages, full contrast."""
    values = np.random.default_rng(2).integers(200, 4096, (30, 30)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    seg = read_image(tmp_path / "deep.png")
    cached = cache.load_image(tmp_path / "deep.png", 30)
    np.testing.assert_array_equal(seg, cached)
    assert seg.dtype == np.uint8 and seg.min() == 0 and seg.max() == 255
    expected = np.rint((values - values.min()) * 255.0 / (values.max() - values.min()))
    np.testing.assert_array_equal(seg, expected.astype(np.uint8))


def test_reader_rules_and_errors(tmp_path):
    gray = gray_image(3, 8)
    Image.fromarray(np.dstack([gray, gray, gray, np.zeros_like(gray)]), mode="RGBA").save(
        tmp_path / "clear.png")  # fully transparent: alpha is dropped, not applied
    np.testing.assert_array_equal(read_gray(tmp_path / "clear.png"), gray)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(tmp_path / "red.png")
    assert (read_gray(tmp_path / "red.png") == round(200 * 0.299)).all()
    Image.fromarray(np.full((4, 4), 7, np.uint16)).save(tmp_path / "flat16.png")
    assert (read_gray(tmp_path / "flat16.png") == 0).all()
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match=r"nan.tif: image holds NaN"):
        read_gray(tmp_path / "nan.tif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.png: cannot read image"):
        read_gray(tmp_path / "empty.png")
    with pytest.raises(FileNotFoundError, match=r"absent.png: file not found"):
        read_gray(tmp_path / "absent.png")


def test_duplicate_rows_and_unfinished_cohorts_are_refused(tmp_path):
    names = write_formats(tmp_path / "images", gray_image())
    cohort = write_cohort(tmp_path / "c" / "cohort.csv", names + [names[1]])
    argv = ["--cohort", str(cohort), "--images", str(tmp_path / "images"),
            "--out", str(tmp_path / "cache"), "--size", "8", "--workers", "1"]
    with pytest.raises(SystemExit, match=r"cohort.csv: image 'rgba.png' is listed twice"):
        cache.main(argv)
    with pytest.raises(ValueError, match="listed twice"):
        cache.build_cache(names + [names[0]], tmp_path / "images", tmp_path / "cache", size=8)
    write_csv(cohort, ["image"], [[n] for n in names])
    (tmp_path / "c" / "done.json").unlink()
    with pytest.raises(SystemExit, match=r"c: no done.json, so this cohort"):
        cache.main(argv)
    assert not (tmp_path / "cache").exists()


def test_done_json_is_the_last_word(tmp_path, monkeypatch):
    names = write_formats(tmp_path / "images", gray_image())
    cohort = write_cohort(tmp_path / "cohort.csv", names)
    argv = ["--cohort", str(cohort), "--images", str(tmp_path / "images"),
            "--out", str(tmp_path / "cache"), "--size", "8", "--workers", "1"]
    cache.main(argv)
    record = read_done(tmp_path / "cache", "done.json")
    assert record["outputs"] == ["images.npy", "index.csv", "run.json"]
    assert record["images"] == 5 and record["size"] == 8 and len(record["fingerprint"]) == 64
    # A rebuild killed half-way (here: a new size, decoding interrupted) leaves no record.
    def killed(job):
        raise KeyboardInterrupt
    monkeypatch.setattr(cache, "_load_job", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.main(argv[:-4] + ["--size", "16", "--workers", "1"])
    with pytest.raises(IncompleteRunError):
        read_done(tmp_path / "cache", "done.json")
    assert not (tmp_path / "cache" / "images.npy").exists()


@pytest.mark.parametrize("flag, value", [("--size", "0"), ("--workers", "0"), ("--size", "-3"),
                                         ("--seed", "-1"), ("--size", "1.5")])
def test_numeric_flags_are_range_checked(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit):
        cache.main(["--cohort", str(tmp_path / "c.csv"), "--images", str(tmp_path),
                    "--out", str(tmp_path / "cache"), flag, value])
    assert re.search(f"argument {flag}: ('{value}' is not an integer|{value} is not in)",
                     capsys.readouterr().err)


def test_an_output_folder_of_the_users_files_is_refused_untouched(tmp_path):
    names = write_formats(tmp_path / "images", gray_image())
    cohort = write_cohort(tmp_path / "cohort" / "cohort.csv", names)
    out = tmp_path / "images"                        # the user's image folder given as --out
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit) as error:
        cache.main(["--cohort", str(cohort), "--images", str(out), "--out", str(out),
                    "--size", "8", "--workers", "1"])
    assert str(error.value).startswith("error: ") and "did not write" in str(error.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_image_list_checksum_follows_the_names_only_and_a_kept_cache_is_checked(tmp_path):
    """cohort/.sum-images (Make's checksum the cache stage waits on) changes with the names or their
    order, not with the labels or the splits; a cache kept over a cohort of other images is still
    refused when a run reads it (cxrcls.split_data compares the names row for row)."""
    work = make_work(tmp_path / "w", n=12, size=16)
    cohort = work / "cohort" / "cohort.csv"
    rows = read_csv(cohort)
    before = cache.image_list_sha256(cohort)

    def rewrite(rows):                                # as the cohort stage makes it again
        write_csv(cohort, list(rows[0]), [list(r.values()) for r in rows])
        made_again(cohort.parent)
        return cache.image_list_sha256(cohort)

    relabelled = [{**r, "Mass": str(1 - int(r["Mass"]))} for r in rows]
    assert rewrite(relabelled) == before
    load_split(work, 0)
    assert rewrite(rows[::-1]) != before
    with pytest.raises(ValueError, match="list different images or orders"):
        load_split(work, 0)
    assert rewrite([{**rows[0], "image": "other.png"}, *rows[1:]]) != before
    with pytest.raises(ValueError, match="list different images or orders"):
        load_split(work, 0)
