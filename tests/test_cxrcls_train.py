"""Classifier training on a tiny learnable synthetic task: learning, outputs, resume, input pairs,
completion records and refused inputs."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from cliargs import with_flags
from cxrcls import train
from cxrcls.attribution import run_arguments
from cxrcls.labels import LABELS
from cxrcls.predict import open_run
from cxrseg import postprocess
from cxrseg.records import require_postprocessed
from cxrstats import report, summary
from cxrstats.foundation.fileio import (FOLDER_MARKER, IncompleteRunError, content_facts,
                                        read_csv, read_done, write_csv, write_done)
from cxrstats.results import changed_inputs
from cxrstats.study import tune_thresholds
from synthetic_work import made_again, make_work


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

# --precision fp32: these tests compare digits, which must not depend on whether the CPU runs bf16
FAST = ["--arch", "resnet18", "--weights", "none", "--device", "cpu", "--lr", "1e-3",
        "--batch-size", "4", "--threads", "1", "--seed", "3", "--precision", "fp32"]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def history(folder):
    return read_csv(folder / "history.csv", required=["epoch", "train_loss", "val_loss",
                                                      "val_macro_auroc", "seconds"])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("work"), n=20, size=32, fractions=(0.4, 0.3, 0.3),
                     radii=(0, 15, 30, 50))


@pytest.fixture(scope="module")
def uninterrupted(work):
    out = work / "runs" / "uninterrupted"
    train.main(["--work", str(work), "--epochs", "2", "--out", str(out), *FAST])
    return out


def test_loss_goes_down_and_outputs_have_the_documented_shapes(work, uninterrupted):
    rows = history(uninterrupted)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[1]["val_loss"]) < float(rows[0]["val_loss"])
    splits = [r for r in read_csv(work / "cohort" / "splits.csv") if r["split"] == "0"]
    for part in ("val", "test"):
        probs = np.load(uninterrupted / f"{part}_probs.npy")
        ids = [r["image"] for r in read_csv(uninterrupted / f"{part}_ids.csv", required=["image"])]
        assert probs.dtype == np.float32 and probs.shape == (len(ids), 5) == (6, 5)
        assert sorted(ids) == sorted(r["image"] for r in splits if r["part"] == part)
        assert ((probs > 0) & (probs < 1)).all()
    thresholds = read_csv(uninterrupted / "thresholds.csv",
                          required=["label", "threshold", "val_f1"])
    assert [r["label"] for r in thresholds] == list(LABELS)
    cohort = read_csv(work / "cohort" / "cohort.csv")
    labels = {r["image"]: [int(r[c]) for c in LABELS] for r in cohort}
    val_ids = [r["image"] for r in read_csv(uninterrupted / "val_ids.csv")]
    expected, f1, _ = tune_thresholds(np.load(uninterrupted / "val_probs.npy"),
                                      np.array([labels[i] for i in val_ids]))
    assert [float(r["threshold"]) for r in thresholds] == expected.tolist()  # the study's rule
    done = read_done(uninterrupted, "done.json")
    made = {p.name for p in uninterrupted.iterdir()} - {"done.json", FOLDER_MARKER}
    assert set(done["outputs"]) == made
    assert set(done["inputs"]) == {"cohort", "cache"}
    timing = json.loads((uninterrupted / "timing.json").read_text())
    assert timing["epochs"] == 2 and timing["device"] == "cpu" and timing["train_seconds"] > 0
    best = torch.load(uninterrupted / "best.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == timing["best_epoch"] == done["best_epoch"]
    assert best["arch"] == "resnet18"
    assert (uninterrupted / "run.json").is_file()
    assert not list(uninterrupted.glob("*.tmp"))


def test_resume_ends_where_an_uninterrupted_run_ends(work, uninterrupted):
    out = work / "runs" / "resumed"
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), *FAST])
    train.main(["--work", str(work), "--epochs", "2", "--out", str(out), "--resume", *FAST])
    assert_same_weights(weights(out / "last.pt"), weights(uninterrupted / "last.pt"))
    assert_same_weights(weights(out / "best.pt"), weights(uninterrupted / "best.pt"))
    a = torch.load(out / "last.pt", weights_only=True)
    b = torch.load(uninterrupted / "last.pt", weights_only=True)
    assert torch.equal(a["aug_rng"], b["aug_rng"])
    np.testing.assert_array_equal(np.load(out / "test_probs.npy"),
                                  np.load(uninterrupted / "test_probs.npy"))

    def drop(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert drop(history(out)) == drop(history(uninterrupted))
    # Resuming with different settings is refused, naming the checkpoint.
    with pytest.raises(SystemExit, match=r"last.pt: cannot resume with different settings.*lr"):
        train.main(["--work", str(work), "--epochs", "3", "--out", str(out), "--resume",
                    *with_flags(FAST, "--lr", "0.5")])
    assert read_done(out, "done.json")["epochs"] == 2  # refused before touching the finished run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_last_pt_saved_on_a_gpu_resumes_on_a_machine_without_one(work, uninterrupted):
    """last.pt of a GPU run holds Adam's state (and the fused Adam's step counts) on the GPU;
    resuming it on the CPU ends where the uninterrupted run ends."""
    from test_foundation_checkpoints import as_saved_on_cuda

    out = work / "runs" / "resumed_from_gpu"
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), *FAST])
    as_saved_on_cuda(out / "last.pt")
    as_saved_on_cuda(out / "best.pt")
    train.main(["--work", str(work), "--epochs", "2", "--out", str(out), "--resume", *FAST])
    assert_same_weights(weights(out / "last.pt"), weights(uninterrupted / "last.pt"))


@pytest.mark.parametrize("save_every", ["0", "1e9"])
def test_last_checkpoint_is_saved_every_n_seconds_at_improvements_and_at_the_end(
        work, monkeypatch, save_every):
    saved = []
    real_save = train.save_checkpoint
    def recording_save(path, obj):
        saved.append((path.name, obj["epoch"]))
        real_save(path, obj)
    monkeypatch.setattr(train, "save_checkpoint", recording_save)
    out = work / "runs" / f"save_every_{save_every}"
    train.main(["--work", str(work), "--epochs", "3", "--patience", "9", "--out", str(out),
                "--save-every", save_every, "--freeze-backbone", *FAST])
    aucs = [float(r["val_macro_auroc"]) for r in history(out)]
    improved = [e for e in (1, 2, 3) if aucs[e - 1] > max(aucs[:e - 1], default=-1)]
    last = [1, 2, 3] if save_every == "0" else sorted({*improved, 3})
    assert [e for name, e in saved if name == "last.pt"] == last
    # last.pt before best.pt: a kill between them never leaves best.pt ahead of last.pt
    assert [e for name, e in saved if name == "best.pt"] == improved
    assert all(saved.index(("last.pt", e)) < saved.index(("best.pt", e)) for e in improved)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3


@pytest.mark.parametrize("name", ["best.pt", "test_probs.npy", "thresholds.csv"])
def test_a_run_file_copied_from_another_run_is_refused_by_its_readers(uninterrupted, tmp_path,
                                                                     name):
    """done.json vouches for every file the readers use (all but last.pt) by its sha256: a file
    copied in from another run, or edited, is refused, naming it (here by cxrcls.predict's
    reader; the report's is the same read_done)."""
    assert read_done(uninterrupted)["content_files"] == [n for n in train.OUTPUTS
                                                         if n != "last.pt"]
    run = shutil.copytree(uninterrupted, tmp_path / "run")
    other = {"best.pt": "last.pt", "test_probs.npy": "val_probs.npy",
             "thresholds.csv": "history.csv"}[name]
    shutil.copy(run / other, run / name)
    with pytest.raises(IncompleteRunError, match=rf"run/{re.escape(name)}: changed since the "
                                                 "training run"):
        open_run(run, torch.device("cpu"))


def test_train_on_any_mask_radius_test_on_original_linear_probe(work):
    train.main(["--work", str(work), "--train-input", "m30", "--eval-input", "original",
                "--epochs", "1", "--freeze-backbone", "--image-size", "40", *FAST])
    out = work / "runs" / "resnet18_m30_on_original" / "split0"
    assert np.load(out / "test_probs.npy").shape == (6, 5)
    start = torch.load(out / "best.pt", weights_only=True)
    assert start["input"] == "m30" and start["image_size"] == 40
    assert set(read_done(out, "done.json")["inputs"]) == {"cohort", "cache",
                                                          "masks/done_postprocess.json"}


def test_a_run_is_not_read_over_masks_made_again_since_it_trained(tmp_path):
    work = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3), radii=(0, 15))
    train.main(["--work", str(work), "--train-input", "m15", "--epochs", "1",
                "--freeze-backbone", *FAST])
    out = work / "runs" / "resnet18_m15" / "split0"
    record = read_done(out)
    assert set(record["mask_sha256"]) == {"masks/m15.npy"}
    assert changed_inputs(work, out, record) is None
    m15 = np.load(work / "masks" / "m15.npy")
    np.save(work / "masks" / "m15.npy", m15)                    # post-processed again, same masks
    assert changed_inputs(work, out, record) is None
    m15[0] = 1 - m15[0]                                          # made again, other masks
    np.save(work / "masks" / "m15.npy", m15)
    why = r"split0: trained on other masks than .*m15.npy holds now"
    assert re.search(why, changed_inputs(work, out, record))
    write_csv(work / "cohort" / "table1.csv", ["label", "images"], [["Mass", 1]])
    with pytest.raises(SystemExit, match=why):
        report.main(["--work", str(work), "--no-figures", "--permutations", "9",
                     "--bootstrap", "0"])
    with pytest.raises(IncompleteRunError, match=why):
        run_arguments(out)                                       # cxrcls.attribution's reader


def flip_last_byte(path):
    """One pixel of the last mask in a .npy file flipped by hand: same header, same shape."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_mask_files_are_read_only_with_the_bytes_postprocess_wrote(tmp_path):
    """A mask file edited by hand, or copied back from another run, keeps its shape: training,
    the mask figures, the report's summary and its check of a run refuse it by its sha256 against
    done_postprocess.json, naming the file and saying to post-process again. (m0, the eroded
    mask: on 32 px images m15 is all ones whatever the erosion.)"""
    work = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3), radii=(0,))
    masks = work / "masks"
    postprocess_masks = ["--masks", str(masks / "raw.npy"), "--index",
                         str(work / "cache" / "index.csv"), "--out", str(masks), "--erode", "1",
                         "--dilate", "0"]
    postprocess.main(postprocess_masks)
    run = ["--work", str(work), "--train-input", "m0", "--epochs", "1", "--freeze-backbone",
           *FAST]
    train.main(run)
    out = work / "runs" / "resnet18_m0" / "split0"
    assert changed_inputs(work, out, read_done(out)) is None
    written = (masks / "m0.npy").read_bytes()
    flip_last_byte(masks / "m0.npy")
    assert np.load(masks / "m0.npy").shape == (20, 32, 32)
    why = (r"masks/m0.npy: changed since the cxrseg.postprocess run wrote it .*"
           r"done_postprocess.json vouches for.*re-run the cxrseg.postprocess run")
    with pytest.raises(SystemExit, match=why):
        train.main(with_flags(run, "--out", str(tmp_path / "edited")))
    with pytest.raises(IncompleteRunError, match=why):
        require_postprocessed(masks / "m0.npy")                 # cxrseg.figures' reader
    (masks / "m0.npy").write_bytes(written)
    flip_last_byte(masks / "qc.csv")
    assert "changed since the cxrseg.postprocess run" in "".join(summary.flagged_masks(work))
    postprocess.main(with_flags(postprocess_masks, "--erode", "2"))  # other masks, vouched for
    assert (masks / "m0.npy").read_bytes() != written
    (masks / "m0.npy").write_bytes(written)                     # the old file copied back
    assert re.search(r"split0: trained on .*m0.npy, not the one .*done_postprocess.json "
                     r"vouches for", changed_inputs(work, out, read_done(out)))


def test_masks_post_processed_again_with_more_radii_keep_the_runs_on_the_same_masks(tmp_path):
    """make tightness post-processes again with more radii: done_postprocess.json gets other
    arguments, m15.npy the same bytes, and make re-trains no m15 run. The report's check and a
    resume keep such a run; once m15.npy holds other bytes they refuse it."""
    shape = {"n": 20, "size": 32, "fractions": (0.4, 0.3, 0.3)}
    work = make_work(tmp_path / "w", radii=(0, 15), **shape)
    run = ["--work", str(work), "--train-input", "m15", "--epochs", "2", "--freeze-backbone",
           *FAST]
    train.main(with_flags(run, "--epochs", "1"))
    out = work / "runs" / "resnet18_m15" / "split0"
    before = read_done(work / "masks", "done_postprocess.json")["arguments_hash"]
    make_work(work, radii=(0, 15, 30, 100), **shape)             # the same m15.npy, more radii
    assert read_done(work / "masks", "done_postprocess.json")["arguments_hash"] != before
    assert changed_inputs(work, out, read_done(out)) is None
    train.main([*run, "--resume"])
    assert read_done(out)["epochs"] == 2
    m15 = np.load(work / "masks" / "m15.npy")
    m15[0] = 1 - m15[0]                                          # made again, other masks
    np.save(work / "masks" / "m15.npy", m15)
    make_work(work / "elsewhere", radii=(15,), **shape)          # other arguments once more
    (work / "masks" / "done_postprocess.json").write_bytes(
        (work / "elsewhere" / "masks" / "done_postprocess.json").read_bytes())
    made_again(work / "masks", "done_postprocess.json")         # vouching for the new m15.npy
    assert re.search(r"split0: trained on other masks than .*m15.npy holds now",
                     changed_inputs(work, out, read_done(out)))
    with pytest.raises(SystemExit, match=r"cannot resume: .*\(masks/m15.npy differ"):
        train.main(with_flags(run, "--epochs", "3") + ["--resume"])


def test_resume_over_other_masks_or_cohort_is_refused_naming_them(tmp_path):
    work = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3), radii=(0, 15))
    out = tmp_path / "run"
    run = ["--work", str(work), "--train-input", "m15", "--epochs", "2", "--out", str(out),
           "--freeze-backbone", *FAST]
    train.main(with_flags(run, "--epochs", "1"))
    saved = torch.load(out / "last.pt", weights_only=True)["config"]["inputs"]
    assert saved == {k: read_done(out)[k] for k in ("inputs", "mask_sha256")}
    m15 = np.load(work / "masks" / "m15.npy")
    m15[0] = 1 - m15[0]                                          # masks made again, other masks
    np.save(work / "masks" / "m15.npy", m15)
    made_again(work / "masks", "done_postprocess.json")
    with pytest.raises(SystemExit, match=r"last.pt: cannot resume: trained on other inputs .*"
                                         r"\(masks/m15.npy differ"):
        train.main([*run, "--resume"])
    m15[0] = 1 - m15[0]                                          # the same masks again
    np.save(work / "masks" / "m15.npy", m15)
    made_again(work / "masks", "done_postprocess.json")
    write_done(work / "cohort", {"other": "cohort"}, ["cohort.csv", "splits.csv"])
    with pytest.raises(SystemExit, match=r"other inputs .*\(cohort differ"):
        train.main([*run, "--resume"])
    assert read_done(out)["epochs"] == 1                         # the finished run is untouched


def remake_cohort(work, flip=None):
    """cohort.csv written again (label `flip` flipped on every image, as from an edited label
    table) and cohort/done.json made again with the same arguments, as cxrcls.cohort records it."""
    arguments = read_done(work / "cohort")["arguments"]
    rows = read_csv(work / "cohort" / "cohort.csv")
    for row in rows if flip else []:
        row[flip] = str(1 - int(row[flip]))
    write_csv(work / "cohort" / "cohort.csv", list(rows[0]), [list(r.values()) for r in rows])
    write_done(work / "cohort", arguments, ["cohort.csv", "splits.csv"],
               **content_facts(work / "cohort", ("cohort.csv", "splits.csv")))


def test_resume_over_a_cohort_made_again_from_other_labels_is_refused(tmp_path):
    work = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3), radii=(0,))
    out = tmp_path / "run"
    run = ["--work", str(work), "--epochs", "2", "--out", str(out), "--freeze-backbone", *FAST]
    train.main(with_flags(run, "--epochs", "1"))
    record, cohort = read_done(out), read_done(work / "cohort")
    assert record["inputs"] == {
        name: {k: read_done(work / name)[k] for k in ("arguments_hash", "content_sha256")}
        for name in ("cohort", "cache")}
    remake_cohort(work, flip="Mass")                             # same arguments, other labels
    assert read_done(work / "cohort")["arguments_hash"] == cohort["arguments_hash"]
    with pytest.raises(SystemExit, match=r"other inputs .*\(cohort differ"):
        train.main([*run, "--resume"])
    assert changed_inputs(work, out, record).startswith(
        f"{out}: trained on another cohort than WORK holds now: its cohort.csv/splits.csv differ")
    remake_cohort(work, flip="Mass")                             # the labels it trained on
    train.main([*run, "--resume"])
    assert read_done(out)["epochs"] == 2


def test_resume_reads_inputs_recorded_as_bare_arguments_hashes():
    now = {"inputs": {"cohort": {"arguments_hash": "a1", "content_sha256": "c1"}},
           "mask_sha256": {}}
    assert train.changed_records({"inputs": {"cohort": "a1"}, "mask_sha256": {}}, now) == []
    assert train.changed_records({"inputs": {"cohort": "a0"}, "mask_sha256": {}}, now) == [
        "cohort"]
    other = {"inputs": {"cohort": {"arguments_hash": "a1", "content_sha256": "c0"}},
             "mask_sha256": {}}
    assert train.changed_records(other, now) == ["cohort"]


def test_a_fresh_run_killed_over_a_finished_one_leaves_nothing_of_the_old_run(work, uninterrupted,
                                                                               monkeypatch):
    out = work / "runs" / "killed"
    shutil.copytree(uninterrupted, out)

    def killed(*args, **kwargs):  # the process dies as the final predictions start
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(train, "save_npy", killed)
        with pytest.raises(KeyboardInterrupt):
            train.main(["--work", str(work), "--epochs", "1", "--out", str(out), *FAST])
    left = sorted(p.name for p in out.iterdir() if p.name != FOLDER_MARKER)
    assert left == ["best.pt", "history.csv", "last.pt"]  # no old test_probs/thresholds/timing
    assert [r["epoch"] for r in history(out)] == ["1"]
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    # Resuming keeps last.pt and what the killed run wrote, and finishes with done.json.
    before = torch.load(out / "last.pt", weights_only=True)["epoch"]
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), "--resume", *FAST])
    assert before == 1 and torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert read_done(out, "done.json")["epochs"] == 1
    assert (out / "test_probs.npy").is_file() and (out / "thresholds.csv").is_file()


def test_a_run_killed_between_last_pt_and_best_pt_resumes_with_last_pts_best(
        work, uninterrupted, monkeypatch):
    out = work / "runs" / "killed_at_best"

    def killed(path, obj):  # the process dies as best.pt of epoch 1 is written
        if path.name == "best.pt":
            raise KeyboardInterrupt
        real_save(path, obj)
    real_save = train.save_checkpoint
    with monkeypatch.context() as m:
        m.setattr(train, "save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            train.main(["--work", str(work), "--epochs", "2", "--out", str(out), *FAST])
    last = torch.load(out / "last.pt", weights_only=True)
    assert (last["epoch"], last["best_epoch"]) == (1, 1) and not (out / "best.pt").exists()
    # A best.pt of a later epoch than last.pt (a kill as best.pt was written before last.pt):
    # replaying may not reach it, so it is written again from last.pt's weights too.
    later = torch.load(uninterrupted / "best.pt", weights_only=True)
    torch.save({**later, "epoch": 2, "model": weights(uninterrupted / "last.pt")},
               out / "best.pt")
    for _ in range(2):
        train.main(["--work", str(work), "--epochs", "1", "--out", str(out), "--resume", *FAST])
        best = torch.load(out / "best.pt", weights_only=True)
        assert best["epoch"] == read_done(out)["best_epoch"] == 1
        assert best["val_macro_auroc"] == last["best_metric"]
        assert_same_weights(best["model"], last["model"])
        (out / "best.pt").unlink()                               # killed before best.pt at all
    # Any other best.pt is not of this run: refused, the finished run kept.
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), "--resume", *FAST])
    torch.save({**last, "epoch": 2}, out / "last.pt")            # best epoch 1, not its own
    torch.save({**best, "epoch": 2}, out / "best.pt")
    with pytest.raises(SystemExit, match=r"best.pt is of epoch 2, but the last.pt beside it has "
                                         r"best epoch 1 and is of epoch 2"):
        train.main(["--work", str(work), "--epochs", "2", "--out", str(out), "--resume", *FAST])
    assert json.loads((out / "done.json").read_text())["best_epoch"] == 1  # the record kept,
    with pytest.raises(IncompleteRunError, match=r"best.pt: changed since"):  # which names the
        read_done(out)                                           # best.pt written over its own


def test_a_diverged_epoch_is_no_improvement_and_a_run_never_valid_is_refused(work, monkeypatch):
    real_epoch = train.train_one_epoch

    def diverging_from(first):
        def train_one_epoch(run, loader, epoch):
            result = real_epoch(run, loader, epoch)
            if epoch >= first:                                   # the weights blew up: NaN
                with torch.no_grad():
                    for p in run.model.parameters():
                        p.fill_(float("nan"))
            return result
        return train_one_epoch
    out = work / "runs" / "diverged"
    monkeypatch.setattr(train, "train_one_epoch", diverging_from(2))
    train.main(["--work", str(work), "--epochs", "3", "--patience", "2", "--out", str(out),
                *FAST])
    assert [r["val_macro_auroc"] for r in history(out)][1:] == ["nan", "nan"]
    assert read_done(out)["best_epoch"] == 1 and read_done(out)["epochs"] == 3
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    assert np.isfinite(np.load(out / "test_probs.npy")).all()   # predicted with epoch 1's weights
    monkeypatch.setattr(train, "train_one_epoch", diverging_from(1))
    never = work / "runs" / "never_valid"
    with pytest.raises(SystemExit, match=r"never_valid: no best.pt: the validation macro AUROC "
                                         r"of every epoch \(2\) was NaN"):
        train.main(["--work", str(work), "--epochs", "2", "--out", str(never), *FAST])
    assert not (never / "done.json").exists()


def test_unfinished_and_duplicated_inputs_are_refused(work, tmp_path):
    def fresh(name):
        return make_work(tmp_path / name, n=20, size=32, fractions=(0.4, 0.3, 0.3))

    def run(folder, *extra):
        train.main(["--work", str(folder), "--epochs", "1", "--out", str(tmp_path / "out"),
                    *extra, *FAST])
    bad = fresh("nocohort")
    (bad / "cohort" / "done.json").unlink()
    with pytest.raises(SystemExit, match=r"cohort: no done.json, so this cohort"):
        run(bad)
    bad = fresh("nocache")
    (bad / "cache" / "done.json").unlink()
    with pytest.raises(SystemExit, match=r"cache: no done.json, so this image cache"):
        run(bad)
    bad = fresh("nomasks")
    (bad / "masks" / "done_postprocess.json").unlink()
    with pytest.raises(SystemExit, match=r"masks: no done_postprocess.json"):
        run(bad, "--train-input", "m15")
    bad = fresh("dupcohort")
    rows = read_csv(bad / "cohort" / "cohort.csv")
    write_csv(bad / "cohort" / "cohort.csv", list(rows[0]),
              [list(r.values()) for r in rows + rows[3:4]])
    made_again(bad / "cohort")                       # as a cohort written with the image twice
    with pytest.raises(SystemExit, match=r"cohort.csv: image 'img00003.png' is listed twice"):
        run(bad)
    bad = fresh("dupsplit")
    rows = read_csv(bad / "cohort" / "splits.csv")
    moved = next(r for r in rows if r["part"] == "test")
    rows.append({**moved, "part": "train"})  # the same image again, now in training
    write_csv(bad / "cohort" / "splits.csv", ["image", "split", "part"],
              [list(r.values()) for r in rows])
    made_again(bad / "cohort")
    listed_twice = rf"splits.csv \(split 0\): image '{moved['image']}' is listed twice"
    with pytest.raises(SystemExit, match=listed_twice):
        run(bad)
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("flag, value", [
    ("--epochs", "0"), ("--patience", "0"), ("--batch-size", "0"), ("--eval-batch-size", "-1"),
    ("--lr", "0"), ("--lr", "nan"), ("--split", "-1"), ("--image-size", "0"),
    ("--overlay-thickness", "0"), ("--save-every", "-1"), ("--log-every", "-1"),
    ("--threads", "-2"), ("--seed", "-1"), ("--train-input", "m-1"), ("--eval-input", "m015"),
    ("--train-input", "m15.5")])
def test_bad_flags_stop_at_parse_time(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit):
        train.main(["--work", str(tmp_path), flag, value])
    assert re.search(f"argument {re.escape(flag)}: .*({re.escape(value)}|unknown input)",
                     capsys.readouterr().err)


def test_bad_inputs_are_named(work, tmp_path):
    with pytest.raises(SystemExit, match="split 7 has no"):
        train.main(["--work", str(work), "--split", "7", "--epochs", "1", "--out", str(tmp_path),
                    *FAST])
    with pytest.raises(SystemExit, match="raw.npy"):
        bad = make_work(tmp_path / "w", n=20, size=32, fractions=(0.4, 0.3, 0.3))
        (bad / "masks" / "raw.npy").unlink()
        train.main(["--work", str(bad), "--train-input", "overlay", "--epochs", "1", *FAST])


def test_resume_without_last_pt_or_with_a_broken_one_is_refused_naming_it(work, uninterrupted,
                                                                          tmp_path):
    out = tmp_path / "never_started"
    with pytest.raises(SystemExit, match=r"error: .*never_started/last.pt: --resume given but "
                                         r"there is no last.pt"):
        train.main(["--work", str(work), "--epochs", "1", "--out", str(out), "--resume", *FAST])
    assert not out.exists()  # refused before anything was made
    broken = tmp_path / "broken"
    shutil.copytree(uninterrupted, broken)
    last = torch.load(broken / "last.pt", weights_only=True)
    torch.save({k: v for k, v in last.items() if k != "aug_rng"}, broken / "last.pt")
    with pytest.raises(SystemExit, match=r"last.pt: not a cxrcls.train last.pt .*'aug_rng'"):
        train.main(["--work", str(work), "--epochs", "3", "--out", str(broken), "--resume", *FAST])
    torch.save({**last, "model": {}}, broken / "last.pt")  # right keys, no weights in them
    with pytest.raises(SystemExit, match=r"last.pt: cannot restore the training state"):
        train.main(["--work", str(work), "--epochs", "3", "--out", str(broken), "--resume", *FAST])
    assert read_done(broken)["outputs"]          # the finished run it was given is still finished


def test_the_library_predicts_what_the_run_wrote(work, uninterrupted):
    # cxrcls.training and cxrcls.split_data are what other modules (attribution, benchmarks) use
    # to do as training does: with the run's best.pt they give its test probabilities back.
    from cxrcls.loader import BatchLoader
    from cxrcls.inputs import open_input
    from cxrcls.models import Classifier
    from cxrcls.split_data import load_split
    from cxrcls.training import predict_logits, sigmoid
    from cxrstats.foundation.checkpoints import load_checkpoint

    names, labels6, parts = load_split(work, 0)
    model = Classifier("resnet18")
    model.load_state_dict(load_checkpoint(uninterrupted / "best.pt")["model"])
    model.to(memory_format=torch.channels_last)  # as training runs it
    source = open_input(work / "cache", work / "masks", "original")
    loader = BatchLoader(source, parts["test"], labels6[:, :5].astype(np.float32),
                         batch_size=16)  # as the run predicted: --eval-batch-size 16
    probs = sigmoid(predict_logits(model, loader, "original", torch.device("cpu"), None, 2, True))
    assert [names[i] for i in parts["test"]] == [
        r["image"] for r in read_csv(uninterrupted / "test_ids.csv")]
    np.testing.assert_array_equal(probs, np.load(uninterrupted / "test_probs.npy"))


def test_precision_is_recorded_and_a_resume_in_another_precision_is_refused(work, uninterrupted,
                                                                            monkeypatch):
    import cxrstats.foundation.device as device
    records = [json.loads((uninterrupted / name).read_text()) for name in ("run.json",
                                                                            "timing.json")]
    records.append(read_done(uninterrupted, "done.json"))
    assert [r["precision"] for r in records] == ["fp32"] * 3
    assert torch.load(uninterrupted / "last.pt", weights_only=True)["config"]["precision"] == "fp32"
    monkeypatch.setattr(device, "cpu_runs_bf16", lambda: True)   # bf16 autocast runs on any CPU
    with pytest.raises(SystemExit, match=r"last.pt: cannot resume with different settings.*"
                                         r"precision"):
        train.main(["--work", str(work), "--epochs", "3", "--out", str(uninterrupted),
                    "--resume", *with_flags(FAST, "--precision", "bf16")])
    assert read_done(uninterrupted, "done.json")["epochs"] == 2


def test_bf16_copies_resume_where_an_uninterrupted_run_ends_and_are_recorded(work, monkeypatch):
    # --bf16-copies: weights, Adam's state and the bf16 copies survive last.pt exactly
    import cxrstats.foundation.device as device
    monkeypatch.setattr(device, "cpu_runs_bf16", lambda: True)   # bf16 autocast runs on any CPU
    flags = [*with_flags(FAST, "--precision", "bf16"), "--bf16-copies"]
    straight, resumed = work / "runs" / "bf16_straight", work / "runs" / "bf16_resumed"
    train.main(["--work", str(work), "--epochs", "2", "--out", str(straight), *flags])
    train.main(["--work", str(work), "--epochs", "1", "--out", str(resumed), *flags])
    train.main(["--work", str(work), "--epochs", "2", "--out", str(resumed), "--resume", *flags])
    assert_same_weights(weights(resumed / "last.pt"), weights(straight / "last.pt"))
    np.testing.assert_array_equal(np.load(resumed / "test_probs.npy"),
                                  np.load(straight / "test_probs.npy"))
    for name in ("run.json", "timing.json"):
        record = json.loads((straight / name).read_text())
        assert record["precision"] == "bf16"
        assert record["optimizer"] in ("adam, bf16 weight copies, update compiled",
                                       "adam, bf16 weight copies, update eager")
    saved = torch.load(straight / "best.pt", weights_only=True)["model"]
    assert all(v.dtype == torch.float32 for v in saved.values() if v.is_floating_point())


def test_bf16_copies_in_float32_say_they_do_not_apply(work, capsys):
    out = work / "runs" / "fp32_copies"
    train.main(["--work", str(work), "--epochs", "1", "--out", str(out), *FAST, "--bf16-copies"])
    assert "note: --bf16-copies applies to bf16 on a CPU in one process, not to fp32" in (
        capsys.readouterr().out)
    assert json.loads((out / "timing.json").read_text())["optimizer"] == "adam"


def test_fp32_predictions_are_the_network_run_without_autocast(work, uninterrupted, monkeypatch):
    # --precision fp32 is the float32 code path exactly: autocast is never entered, so the logits
    # are bit for bit what the model gives on its own
    from cxrcls.inputs import open_input
    from cxrcls.loader import BatchLoader
    from cxrcls.models import Classifier
    from cxrcls.split_data import load_split
    from cxrcls.training import predict_logits, to_model_input
    from cxrstats.foundation.checkpoints import load_checkpoint

    names, labels6, parts = load_split(work, 0)
    model = Classifier("resnet18")
    model.load_state_dict(load_checkpoint(uninterrupted / "best.pt")["model"])
    model.eval()
    source = open_input(work / "cache", work / "masks", "original")
    rows = parts["test"]
    loader = BatchLoader(source, rows, labels6[:, :5].astype(np.float32), batch_size=len(rows))

    def refuse(*args, **kwargs):
        raise AssertionError("autocast entered under --precision fp32")
    monkeypatch.setattr(torch, "autocast", refuse)
    logits = predict_logits(model, loader, "original", torch.device("cpu"), None, 2, False,
                            precision="fp32")
    batch = next(iter(loader))
    with torch.no_grad():
        plain = model(to_model_input(batch.images, batch.masks, "original", torch.device("cpu"),
                                     None, 2, False)).numpy()
    np.testing.assert_array_equal(logits, plain)
