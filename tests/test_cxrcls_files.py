"""Finding images by name: symbolic links are followed (without looping), duplicates are
refused."""
import os

import pytest

from cxrcls.files import check_unique, locate_images, walk_files


def make_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_images_behind_a_linked_folder_are_found(tmp_path):
    """NIH_DIR/images -> /mnt/bigdisk/...: the usual way to bring in a 45 GB dataset."""
    make_images(tmp_path / "bigdisk" / "nih" / "images_001" / "images", ["a.png", "b.png"])
    make_images(tmp_path / "bigdisk" / "file_target", ["c.png"])
    nih = tmp_path / "NIH_DIR"
    nih.mkdir()
    os.symlink(tmp_path / "bigdisk" / "nih", nih / "images")
    os.symlink(tmp_path / "bigdisk" / "file_target" / "c.png", nih / "c.png")  # a linked file
    paths = locate_images(["b.png", "a.png", "c.png"], nih)
    assert [p.name for p in paths] == ["b.png", "a.png", "c.png"]
    assert paths[0] == nih / "images" / "images_001" / "images" / "b.png"
    assert all(p.read_bytes() == b"x" for p in paths)


def test_a_link_to_an_ancestor_does_not_loop(tmp_path):
    root = tmp_path / "data"
    make_images(root / "sub", ["a.png"])
    os.symlink(root, root / "sub" / "loop")        # sub/loop -> data: a cycle
    os.symlink(root / "sub", root / "again")       # a second route to sub
    walked = list(walk_files(root))
    assert [name for _, name in walked] == ["a.png"]  # each folder once, so each file once
    assert [p.name for p in locate_images(["a.png"], root)] == ["a.png"]


def test_missing_broken_and_duplicate_images_are_named(tmp_path):
    root = tmp_path / "data"
    make_images(root / "one", ["a.png"])
    make_images(root / "two", ["a.png"])
    with pytest.raises(ValueError, match=r"'a.png' occurs twice"):
        locate_images(["a.png"], root)
    os.symlink(tmp_path / "nowhere.png", root / "one" / "gone.png")
    with pytest.raises(ValueError, match=r"gone.png: broken symbolic link"):
        locate_images(["gone.png"], root)
    with pytest.raises(FileNotFoundError, match=r"1 of 1 images not found.*z.png"):
        locate_images(["z.png"], root)


def test_a_name_listed_twice_is_refused_naming_the_source():
    check_unique(["a.png", "b.png"], "cohort.csv")
    with pytest.raises(ValueError, match=r"cohort.csv: image 'b.png' is listed twice \(rows 2 "):
        check_unique(["a.png", "b.png", "b.png"], "cohort.csv")


def test_a_name_that_differs_from_a_file_in_case_or_extension_gets_a_hint(tmp_path):
    """A table written without extensions (MIMIC's dicom_id) or in capitals: refused, and the
    message shows the file it probably means."""
    make_images(tmp_path / "data" / "sub", ["00000001_000.png", "b.png"])
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images not found .*\(e.g. 00000001_000\); "
                       r"'00000001_000' is there as '00000001_000.png': names must match"):
        locate_images(["b.png", "00000001_000"], tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"'B.PNG' is there as 'b.png'"):
        locate_images(["B.PNG"], tmp_path / "data")
    make_images(tmp_path / "data", ["cafe\u0301.png"])            # decomposed, as a Mac writes it
    with pytest.raises(FileNotFoundError, match="'caf\u00e9.png' is there as 'cafe\u0301.png'"):
        locate_images(["caf\u00e9.png"], tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"\(e.g. z.png\)$"):
        locate_images(["z.png"], tmp_path / "data")
