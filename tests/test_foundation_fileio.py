"""The file rules every stage relies on: a stage writes only into its own folders, and reads CSVs
as people save them."""
import pytest

from cxrstats.foundation.fileio import (FOLDER_MARKER, ForeignFolderError, begin_run, claim_folder,
                                        read_csv, write_done)


def test_a_new_or_empty_folder_is_claimed_and_marked(tmp_path):
    new = claim_folder(tmp_path / "a" / "b")
    assert (new / FOLDER_MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".done-predict.start").write_text("1")  # Make's stamp, written before the stage runs
    assert (claim_folder(empty) / FOLDER_MARKER).is_file()


def test_a_folder_with_files_the_toolkit_did_not_write_is_refused_untouched(tmp_path):
    user = tmp_path / "my_masks"
    user.mkdir()
    (user / "case1.png").write_bytes(b"not ours")
    with pytest.raises(ForeignFolderError, match="case1.png"):
        begin_run(user, ["case1.png", "index.csv"], done="done.json")
    assert (user / "case1.png").read_bytes() == b"not ours"
    assert not (user / FOLDER_MARKER).exists()


def test_a_file_given_as_a_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ForeignFolderError, match="not a folder"):
        claim_folder(tmp_path / "f")


def test_the_toolkits_own_folder_is_replaced_run_after_run(tmp_path):
    out = tmp_path / "run"
    begin_run(out, ["a.txt"])
    (out / "a.txt").write_text("1")
    write_done(out, {"x": 1}, ["a.txt"])
    begin_run(out, ["a.txt"])  # a second run of the same stage
    assert not (out / "a.txt").exists() and not (out / "done.json").exists()


def test_a_csv_saved_by_excel_is_read(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffImage Index,Finding Labels\r\na.png,\"Mass|Nodule\"\r\n"
                     .encode("utf-8"))
    rows = read_csv(path, required=["Image Index"])
    assert rows == [{"Image Index": "a.png", "Finding Labels": "Mass|Nodule"}]


def test_folders_make_or_the_toolkit_created_are_not_foreign(tmp_path):
    masks = tmp_path / "masks"
    (masks / "shards" / "0of2").mkdir(parents=True)         # made by Make's `mkdir -p`
    (masks / "shards" / "0of2" / ".done-predict").write_text("stamp")
    claim_folder(masks / "shards" / "1of2")                 # a shard's own folder, marked
    (masks / "shards" / "1of2" / "raw.npy").write_bytes(b"x")
    assert claim_folder(masks) == masks
    (masks / "shards" / "notes.txt").write_text("mine")     # a user's file deeper down
    (masks / FOLDER_MARKER).unlink()
    with pytest.raises(ForeignFolderError, match="notes.txt"):
        claim_folder(masks)
