"""Image cache: every pixel format gives the same gray image; bad files are named; re-runs are no-ops."""
import os

import numpy as np
import pytest
from PIL import Image

from cxrcls import cache
from cxrstats.fileio import read_csv, write_csv


def gray_image(seed=0, size=40):
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def write_formats(folder, gray):
    """The same gray picture as 8-bit gray, RGBA, RGB, 16-bit PNG and palette-free gray JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(folder / "gray.png")
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(np.dstack([gray] * 3)).save(folder / "rgb.png")
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    sixteen.save(folder / "sixteen.png")
    Image.fromarray(gray).save(folder / "gray.jpg", quality=95)
    return ["gray.png", "rgba.png", "rgb.png", "sixteen.png", "gray.jpg"]


def test_formats_give_the_same_gray_image(tmp_path):
    gray = gray_image()
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
    cohort = tmp_path / "cohort.csv"
    write_csv(cohort, ["image"], [[n] for n in names + ["broken.png"]])
    with pytest.raises(SystemExit, match="broken.png: cannot decode image"):
        cache.main(["--cohort", str(cohort), "--images", str(tmp_path / "images"),
                    "--out", str(tmp_path / "cache"), "--size", "16", "--workers", "2"])
    assert not (tmp_path / "cache" / "images.npy").exists()
    assert not (tmp_path / "cache" / "images.npy.tmp").exists()


def test_second_run_does_nothing_until_an_input_changes(tmp_path, capsys):
    names = write_formats(tmp_path / "images", gray_image())
    cohort = tmp_path / "cohort.csv"
    write_csv(cohort, ["image"], [[n] for n in names])
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
