"""The file rules every stage relies on: a stage writes only into its own folders, and reads CSVs
as people save them."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrstats.foundation import fileio
from cxrstats.foundation.fileio import (FOLDER_MARKER, ForeignFolderError, IncompleteRunError,
                                        load_npy,
                                        begin_run, claim_folder, content_facts, read_csv,
                                        read_done, save_npy, write_csv, write_done)


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


def test_a_csv_not_in_utf8_is_refused_naming_the_file_and_line(tmp_path):
    """Excel's 'CSV (Comma delimited)' writes Windows-1252: refused, not guessed."""
    path = tmp_path / "labels.csv"
    path.write_bytes("Image Index,Patient ID\r\na.png,1\r\ncaf\u00e9.png,2\r\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"labels.csv: line 3 is not UTF-8 text \(byte 0xe9\); "
                                         r"save it as UTF-8 \(Excel: 'CSV UTF-8'\)"):
        read_csv(path)


def test_a_truncated_csv_is_refused_naming_the_file_and_line(tmp_path):
    """A row cut short (a truncated file) or with a cell too many is refused, never read with
    missing cells."""
    path = tmp_path / "cohort.csv"
    path.write_text("image,Mass,Nodule\na.png,0,1\nb.png,1")
    with pytest.raises(ValueError, match=r"cohort.csv: line 3 has fewer cells than the header's 3"):
        read_csv(path)
    path.write_text("image,Mass\na.png,0\nb.png,1,1\n")
    with pytest.raises(ValueError, match=r"cohort.csv: line 3 has more cells than the header's 2"):
        read_csv(path)


def finished(folder):
    """A stage's folder: two outputs, and a record vouching for them by content."""
    folder.mkdir()
    write_csv(folder / "cohort.csv", ["image", "Mass"], [["a.png", 0], ["b.png", 1]])
    save_npy(folder / "probs.npy", np.array([0.25, 0.75], dtype=np.float32))
    names = ["cohort.csv", "probs.npy"]
    write_done(folder, {"seed": 0}, names, **content_facts(folder, names))
    return folder


@pytest.mark.parametrize("change", ["edit", "truncate", "copy", "record without each file"])
def test_a_file_changed_since_its_stage_wrote_it_is_refused_naming_it(tmp_path, change):
    """A reader trusts a record's files only while they hold the bytes it vouches for: an edited
    cell, a truncated file or the same name copied from another run is refused, naming the file;
    a touched file (same bytes) is read."""
    folder, other = finished(tmp_path / "run"), finished(tmp_path / "other")
    (folder / "cohort.csv").touch()
    assert read_done(folder)["content_files"] == ["cohort.csv", "probs.npy"]
    named = "probs.npy"
    if change == "edit":
        save_npy(folder / "probs.npy", np.array([0.25, 0.5], dtype=np.float32))
    elif change == "truncate":
        (folder / "probs.npy").write_bytes((folder / "probs.npy").read_bytes()[:60])
    elif change == "copy":
        write_csv(other / "cohort.csv", ["image", "Mass"], [["a.png", 1], ["b.png", 1]])
        shutil.copy(other / "cohort.csv", folder / "cohort.csv")
        named = "cohort.csv"
    else:  # a record written with content_sha256 alone: the file is one of its content_files
        record = json.loads((folder / "done.json").read_text())
        del record["content_file_sha256"]
        (folder / "done.json").write_text(json.dumps(record))
        save_npy(folder / "probs.npy", np.array([0.25, 0.5], dtype=np.float32))
        named = r"cohort.csv \(or probs.npy\)"
    with pytest.raises(IncompleteRunError, match=rf"run/{named}: changed since the cohort wrote "
                                                 r"it \(its bytes are not those .*run/done.json "
                                                 r"vouches for.*re-run the cohort"):
        read_done(folder, what="cohort")


def test_a_reader_hashes_only_the_files_it_reads_and_each_once(tmp_path, monkeypatch):
    """read_done's `files`: a reader of probs.npy hashes probs.npy alone (a mask reader does not
    hash every radius' file), once per process while the file is unchanged; an edit of a file it
    does not read is left to that file's readers. A record without each file's sha256 can only
    be checked whole."""
    folder = finished(tmp_path / "run")
    hashed = []
    monkeypatch.setattr(fileio, "file_sha256",
                        lambda path: hashed.append(Path(path).name) or sha256_of(path))
    fileio._sha256_of_version.cache_clear()
    read_done(folder, files=["probs.npy"])
    read_done(folder, files=["probs.npy"])
    assert hashed == ["probs.npy"]
    write_csv(folder / "cohort.csv", ["image", "Mass"], [["a.png", 1], ["b.png", 1]])
    read_done(folder, files=["probs.npy"])
    read_done(folder, files=())
    with pytest.raises(IncompleteRunError, match=r"run/cohort.csv: changed since"):
        read_done(folder, files=["cohort.csv"])
    record = json.loads((folder / "done.json").read_text())
    del record["content_file_sha256"]
    (folder / "done.json").write_text(json.dumps(record))
    with pytest.raises(IncompleteRunError, match=r"run/cohort.csv \(or probs.npy\): changed"):
        read_done(folder, files=["probs.npy"])


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_record_without_a_content_identity_is_read_as_before(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_csv(folder / "a.csv", ["x"], [[1]])
    write_done(folder, {}, ["a.csv"])
    write_csv(folder / "a.csv", ["x"], [[2]])
    assert read_done(folder)["outputs"] == ["a.csv"]


def test_files_vouched_for_by_a_sidecar_are_checked_as_they_are_read(tmp_path):
    """One file per image: each file's sha256 (from the bytes written) in FILE_HASHES, the
    record vouching for that sidecar; a file read back is refused, naming it, when it is not
    listed, gone, or holds other bytes, and so is a record vouching for no sidecar."""
    folder = tmp_path / "run"
    hashes = {f"raw/{stem}.png": fileio.write_bytes(folder / "raw" / f"{stem}.png", stem.encode())
              for stem in ("a", "b", "c")}
    assert hashes["raw/a.png"] == sha256_of(folder / "raw" / "a.png")
    fileio.write_file_hashes(folder, hashes)
    write_done(folder, {}, [*hashes, fileio.FILE_HASHES],
               **content_facts(folder, [fileio.FILE_HASHES]))
    vouched = fileio.vouched_files(folder, read_done(folder), what="segment")
    assert vouched.read_bytes("raw/a.png") == b"a"
    (folder / "raw" / "b.png").write_bytes(b"c")                     # c's bytes under b's name
    (folder / "raw" / "c.png").unlink()
    (folder / "raw" / "d.png").write_bytes(b"d")
    for name, problem in (("b.png", "changed since the segment wrote it"),
                          ("c.png", "missing, though .*sha256.csv lists it"),
                          ("d.png", "not listed in .*sha256.csv")):
        with pytest.raises(IncompleteRunError, match=rf"run/raw/{name}: {problem}.*re-run the "
                                                     r"segment"):
            vouched.read_bytes(f"raw/{name}")
    write_done(folder, {}, ["raw/a.png"])                             # an older version's record
    with pytest.raises(IncompleteRunError, match=r"run/done.json: vouches for no sha256.csv"):
        fileio.vouched_files(folder, json.loads((folder / "done.json").read_text()))


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


def test_a_stage_never_replaces_a_file_another_stages_record_vouches_for(tmp_path):
    """Stages share folders (seg/, masks/), never files: a folder prediction into the cache (its
    index.csv) or the masks folder (qc.csv) is refused before anything is removed, as is a stage
    whose done.json is another stage's (one listing a file it does not write)."""
    cache = tmp_path / "cache"
    begin_run(cache, ["images.npy", "index.csv", "run.json"])
    for name in ("images.npy", "index.csv", "run.json"):
        (cache / name).write_text(name)
    write_done(cache, {"size": 512}, ["images.npy", "index.csv", "run.json"])
    with pytest.raises(ForeignFolderError, match=r"index.csv: made by the stage whose completion "
                                                 r"record is done.json"):
        begin_run(cache, ["index.csv", "prompts.csv", "raw/a.png"], done="done_predict.json")
    with pytest.raises(ForeignFolderError, match=r"done.json: the completion record of another "
                                                 r"stage \(it lists 'images.npy'"):
        begin_run(cache, ["nih/Data_Entry_2017.csv", "run.json"], done="done.json")
    assert sorted(p.name for p in cache.iterdir()) == [FOLDER_MARKER, "done.json", "images.npy",
                                                       "index.csv", "run.json"]
    begin_run(cache, ["images.npy", "index.csv", "run.json"])      # the cache itself, again
    assert not (cache / "done.json").exists() and not (cache / "images.npy").exists()


def test_stages_sharing_a_folder_keep_each_others_files(tmp_path):
    seg = tmp_path / "seg"
    begin_run(seg, ["splits.csv"], done="done_split.json")
    (seg / "splits.csv").write_text("x")
    write_done(seg, {}, ["splits.csv"], done="done_split.json")
    begin_run(seg, ["best.pt", "curves.csv"], done="done_finetune.json")
    assert (seg / "splits.csv").is_file() and (seg / "done_split.json").is_file()


@pytest.mark.parametrize("content, refused", [(None, False), ("my notes", True)])
def test_clean_work_deletes_only_a_folder_of_the_toolkits_stages(tmp_path, content, refused):
    from cxrstats.foundation.ownership import main

    work = tmp_path / "w"
    (work / ".make").mkdir(parents=True)          # Make makes WORK before any stage
    claim_folder(work / "seg")
    (work / ".make" / "env.mk").write_text("x")
    (work / ".lock").write_text("")
    (work / ".done-x").write_text("")
    if content:
        (work / "notes.txt").write_text(content)
    assert main(["--check-work", str(work)]) == (1 if refused else 0)
    assert main(["--check-work", str(tmp_path / "missing")]) == 0


@pytest.mark.parametrize("mmap", [False, True])
def test_load_npy_names_the_file_when_it_is_cut_short_foreign_or_pickled(tmp_path, mmap):
    """numpy's own messages ("mmap length is greater than file size", "cannot reshape") name no
    file; load_npy does, for a copy cut short, a file that is no .npy and an object array."""
    good = tmp_path / "m50.npy"
    np.save(good, np.ones((4, 8, 8), np.uint8))
    np.testing.assert_array_equal(load_npy(good, mmap=mmap), np.ones((4, 8, 8), np.uint8))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-50])
    other = tmp_path / "other.npy"
    other.write_text("image,label\n")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object))
    for path in (cut, other, pickled):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable .npy array"):
            load_npy(path, mmap=mmap)
    with pytest.raises(FileNotFoundError, match="gone.npy: file not found"):
        load_npy(tmp_path / "gone.npy", mmap=mmap)


def test_every_stage_reads_npy_files_through_load_npy():
    """One rule for reading arrays: no stage calls np.load itself (its errors name no file)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    callers = [str(p.relative_to(root)) for package in ("cxrcls", "cxrseg", "cxrstats")
               for p in sorted((root / package).rglob("*.py"))
               if "np.load(" in p.read_text() and p.name != "fileio.py"]
    assert callers == []
