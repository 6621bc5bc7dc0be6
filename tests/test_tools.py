"""The docs' helpers in tools/: the mixed folder `make segment` is tried on; the overlay grid."""
import numpy as np
import pytest
from PIL import Image

from cxrstats.foundation.imageio import read_gray
from tools import mixed_folder, overlay_montage


def test_the_mixed_folder_holds_22_files_of_which_20_read(tmp_path):
    nih = tmp_path / "nih"
    nih.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(nih / f"{i:03d}.png")
    files = mixed_folder.build(nih, tmp_path / "mixed")
    assert len(files) == 22
    readable = []
    for path in files:
        try:
            readable.append(read_gray(path).shape)
        except (ValueError, OSError):
            pass
    assert len(readable) == 20 and set(readable) == {(32, 40)}
    mono1 = read_gray(tmp_path / "mixed" / "dicom_mono1")           # inverted back: like its PNG
    source = np.asarray(Image.open(nih / "019.png"))
    assert np.corrcoef(mono1.ravel().astype(float), source.ravel())[0, 1] > 0.99
    with pytest.raises(ValueError, match="not empty"):
        mixed_folder.build(nih, nih)


def test_the_montage_writes_one_png_and_refuses_a_missing_image(tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    out = tmp_path / "fig" / "grid.png"
    overlay_montage.main([f"{image}:first", str(image), "--out", str(out), "--columns", "2"])
    assert Image.open(out).size[0] > 0 and not list(out.parent.glob("*.tmp.png"))
    with pytest.raises(ValueError, match="missing.png: image not found"):
        overlay_montage.main([str(tmp_path / "missing.png"), "--out", str(out)])
