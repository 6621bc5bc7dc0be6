"""The report's completion record, and the check every reader of results/ makes before trusting it.

`cxrstats.report` writes results/done_report.json last. Besides the outputs it vouches for, the
record names every training run the report read (its folder relative to the work folder and the
sha256 of its done.json) and the cohort (cohort/done.json's sha256 and `split_by`). A reader
(`cxrstats.compare`, `cxrstats.tightness`) calls `read_report`: it refuses a results/ folder
without the record, one whose runs or cohort were re-made, lost their record, or are being
re-made since the report read them, and one whose runs no longer fit WORK's cohort, cache or masks
(`changed_inputs`), so numbers of one set of runs are never read as another's.

Other stages that read runs (`cxrcls.attribution`) record the same `run_entry`s, so their outputs
can be matched with a report's (`mismatched_runs`).

The report and `cxrcls.attribution` state the lung extent of the masks they used (`masks_extent`),
as the masks' own record gives it; `cxrstats.tightness` and `cxrstats.compare` take it from the
report's record (`mask_extent`), with the runs' resolved `precision`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from cxrstats.by_split import AurocsBySplit, read_auroc_by_split
from cxrstats.foundation.extent import UNRECORDED
from cxrstats.foundation.fileio import (CONTENT, FILE_SHA256, IncompleteRunError, begin_run,
                                        changed_identity, claim_folder, current_sha256, file_sha256,
                                        input_identity, read_done)
from cxrstats.foundation.names import inside

REPORT_DONE = "done_report.json"         # cxrstats.report's completion record in results/
ATTRIBUTION_DONE = "done_attribution.json"  # cxrcls.attribution's, beside attribution.csv
RUN_DONE = "done.json"                   # cxrcls.train's, in every runs/<setting>/split<k>/
COHORT_DONE = "done.json"                # cxrcls.cohort's, in cohort/
RERUN = "re-run `make reproduce` for it (or python -m cxrstats.report)"
# The masks' records in WORK/masks/ (cxrseg.records POSTPROCESS, PREDICT): m<r>.npy's, raw.npy's.
MASKS_POSTPROCESS_DONE = "done_postprocess.json"
MASKS_PREDICT_DONE = "done_predict.json"


def masks_extent(work: str | os.PathLike, record: str = MASKS_POSTPROCESS_DONE) -> str | None:
    """The lung extent of the masks in WORK/masks/ as their completion record `record` states it
    (fact `extent`: field or full, none for a segmenter not fine-tuned for lungs; `unrecorded`
    when the record holds none or cannot be read); None when there is no such record (no masks)."""
    path = Path(work) / "masks" / record
    if not path.is_file():
        return None
    try:
        return recorded_extent(json.loads(path.read_text()))
    except (OSError, ValueError):
        return UNRECORDED


def recorded_extent(record) -> str:
    """The lung extent a masks' completion record (a dict) states, `unrecorded` when none."""
    extent = record.get("extent") if isinstance(record, dict) else None
    return extent if isinstance(extent, str) else UNRECORDED


def begin_results(out: str | os.PathLike, outputs, done: str, figures: bool) -> None:
    """`begin_run` for a stage writing into results/ (shared by the report, cxrcls.attribution,
    cxrstats.tightness and cxrseg.figures): with `figures`, results/figures/ is claimed too, so the
    stage that creates it marks it as the toolkit's for the others. Both are checked before
    anything is removed."""
    claim_folder(out, record=done)
    if figures:
        claim_folder(Path(out) / "figures")
    begin_run(out, outputs, done=done)


def run_entry(work: str | os.PathLike, folder: str | os.PathLike, done: str = RUN_DONE,
              sha256: str | None = None) -> dict:
    """{"folder": `folder` relative to `work` (posix), "done_sha256": sha256 of folder/<done>}:
    what a stage records about a finished folder it read (`sha256`: the hash taken when it read
    the record, else the file's now)."""
    relative = Path(os.path.relpath(folder, work)).as_posix()
    return {"folder": relative, "done_sha256": sha256 or file_sha256(Path(folder) / done)}


def changed_inputs(work: str | os.PathLike, folder: str | os.PathLike, record: dict) -> str | None:
    """Why a finished training run in `folder` (`record`: its done.json) no longer fits WORK's
    inputs, naming the run and the input; None when every input it recorded is still the one it
    read (a run that records none is not checked).

    Checked: each input stage it read (`inputs`: {"cohort": identity, "cache": identity,
    "masks/done_postprocess.json": identity}, the `input_identity` of that stage's completion
    record: WORK/cohort/done.json, WORK/cache/done.json, WORK/masks/<record>) must still be
    finished, with the same content where the run recorded a content id (`content_sha256`) and
    with the same arguments (`arguments_hash`; an identity recorded as a bare string is that
    hash), and each mask file it read (`mask_sha256`: {"masks/m15.npy": sha256}) must still hold
    the same bytes, those its mask stage's record vouches for now (`vouched_sha256`); those bytes,
    not the arguments, identify a mask record (`by_mask_bytes`)."""
    mask_sha256 = record.get("mask_sha256")
    return _changed_stage(work, folder, record.get("inputs"), mask_sha256) or \
        changed_mask_files(work, folder, mask_sha256)


def by_mask_bytes(name: str, mask_sha256) -> bool:
    """Whether a run's recorded input `name` is identified by the bytes of the mask files the run
    read (`mask_sha256`, done.json's) rather than by its record's arguments: a mask stage's record
    ("masks/done_postprocess.json", "masks/done_predict.json") of a run that recorded them. The
    post-processing made again with other radii besides (`make tightness`) writes a record of
    other arguments over the same m15.npy, and Make re-trains no run on it (pipeline.md)."""
    return name.startswith("masks/") and isinstance(mask_sha256, dict) and bool(mask_sha256)


def mask_record_identity(record) -> dict:
    """What a run records of a mask stage's completion record: its `input_identity` without the
    content id, which covers every file that stage wrote (all radii, qc.csv); the run's masks are
    identified by the bytes of the files it read (`mask_sha256`, `by_mask_bytes`)."""
    return {key: value for key, value in input_identity(record).items() if key != CONTENT}


def input_record_path(work: str | os.PathLike, name, source: str | os.PathLike = "a run's inputs"
                      ) -> Path:
    """The completion record of a run's recorded input `name`: WORK/<name>/done.json for a
    folder ("cohort", "cache"), WORK/<name> for a record ("masks/done_postprocess.json");
    ValueError naming `source` (the run's done.json) for a name that is no path inside WORK."""
    path = inside(work, name, source, what="input")
    return path if name.endswith(".json") else path / "done.json"


def _changed_stage(work, folder, recorded, mask_sha256) -> str | None:
    if not isinstance(recorded, dict):
        return None
    for name, identity in sorted(recorded.items()):
        path = input_record_path(work, name, f"{Path(folder) / RUN_DONE}: inputs")
        if not path.is_file():
            return (f"{folder}: the {name} it trained on is gone or being made again ({path} is "
                    "missing); re-run the run")
        try:
            current = json.loads(path.read_text())
            change = changed_identity(identity, current)
        except (OSError, ValueError) as error:
            return f"{folder}: cannot read its input's record {path} ({error}); re-run the run"
        then, now = input_identity(identity), input_identity(current)
        if change == "content":
            files = current.get("content_files") if isinstance(current, dict) else None
            what = ("/".join(files) + " differ" if isinstance(files, list) and files
                    else "content differs")
            return (f"{folder}: trained on another {name} than WORK holds now: its {what} "
                    f"({path} was made again from other data: content_sha256 "
                    f"{now.get(CONTENT)}, the run read {then[CONTENT]}); re-run the run, so that "
                    "its numbers are of these inputs")
        if change == "arguments" and not by_mask_bytes(name, mask_sha256):
            return (f"{folder}: trained on another {name} than WORK holds now ({path} was made "
                    f"again with other arguments: hash {now.get('arguments_hash')}, the run read "
                    f"{then.get('arguments_hash')}); re-run the run, so that its numbers are of "
                    "these inputs")
    return None


def changed_mask_files(work, folder, recorded) -> str | None:
    """Why the run in `folder` no longer fits WORK's mask files (`recorded`: its `mask_sha256`),
    naming the file; None when each holds the bytes the run read, and those are the bytes the mask
    stage's record vouches for now (no file hashed but the run's, each once per process)."""
    if not isinstance(recorded, dict):
        return None
    for name, sha256 in sorted(recorded.items()):
        path = inside(work, name, f"{Path(folder) / RUN_DONE}: mask_sha256", what="mask file")
        if not path.is_file():
            return f"{folder}: the masks it trained on, {path}, are gone; re-run the run"
        if current_sha256(path) != sha256:
            return (f"{folder}: trained on other masks than {path} holds now (made again since); "
                    "re-run the run, so that its numbers are of these masks")
        vouched, record = vouched_sha256(path)
        if vouched is not None and vouched != sha256:
            return (f"{folder}: trained on {path}, not the one {record} vouches for (the file was "
                    "edited by hand, or copied from another run); re-run the mask stage, then "
                    "the run")
    return None


def vouched_sha256(path: Path) -> tuple[str | None, Path]:
    """(sha256, record): the sha256 of mask file `path` that its stage's completion record beside
    it holds (done_postprocess.json's `content_file_sha256` for its files, done_predict.json's
    `raw_sha256` for raw.npy), None where it holds none (or cannot be read: refused elsewhere)."""
    name = MASKS_PREDICT_DONE if path.name == "raw.npy" else MASKS_POSTPROCESS_DONE
    record = path.parent / name
    try:
        facts = json.loads(record.read_text())
    except (OSError, ValueError):
        return None, record
    if not isinstance(facts, dict):
        return None, record
    if name == MASKS_PREDICT_DONE:
        return facts.get("raw_sha256"), record
    hashes = facts.get(FILE_SHA256)
    return (hashes.get(path.name) if isinstance(hashes, dict) else None), record


def entry_folder(work: str | os.PathLike, entry: dict, source: str | os.PathLike) -> Path:
    """The folder a recorded `run_entry` names, inside `work`; ValueError naming `source` (the
    record and the entry) when its `folder` is no path inside WORK (absolute, `..`): a report
    never reads another work folder's runs."""
    return inside(work, entry["folder"], source, what="folder")


def changed_entry(work: str | os.PathLike, entry, done: str = RUN_DONE,
                  source: str | os.PathLike = "a recorded folder") -> str | None:
    """Why the folder of a recorded `run_entry` is no longer the one read ("folder: reason"), or
    None when its completion record is still there with the same sha256. ValueError naming
    `source` for a folder outside `work` (`entry_folder`)."""
    if not isinstance(entry, dict) or not {"folder", "done_sha256"} <= set(entry):
        return f"{entry!r}: not a recorded folder (folder, done_sha256)"
    path = entry_folder(work, entry, source) / done
    if not path.is_file():
        return f"{path.parent}: its {done} is gone (re-made, being re-made, or deleted since)"
    if file_sha256(path) != entry["done_sha256"]:
        return f"{path.parent}: its {done} changed since (the folder was made again)"
    return None


def changed_run_inputs(work: Path, runs: list[dict], source: str | os.PathLike) -> list[str]:
    """changed_inputs of each recorded run (its done.json unchanged since the report read it;
    `source`: the record listing them)."""
    reasons = []
    for i, entry in enumerate(runs):
        folder = entry_folder(work, entry, f"{source}: runs[{i}]")
        record = json.loads((folder / RUN_DONE).read_text())
        reasons.append(changed_inputs(work, folder, record))
    return [reason for reason in reasons if reason]


def read_report(work: str | os.PathLike, results: str | os.PathLike | None = None) -> dict:
    """The finished report's record of `work` (results/ = `results`, default WORK/results), after
    checking that every run and the cohort it read are unchanged and that each run still fits
    WORK's inputs (changed_inputs: cohort, cache, masks); IncompleteRunError naming the folder and
    what to do otherwise."""
    work = Path(work)
    results = Path(results) if results is not None else work / "results"
    if not (results / REPORT_DONE).is_file():
        raise IncompleteRunError(
            f"{work}: no finished report ({results / REPORT_DONE} is missing: the report did not "
            f"run, was stopped, or is running); {RERUN}")
    try:
        record = read_done(results, REPORT_DONE, what="report")
    except IncompleteRunError as error:
        raise IncompleteRunError(f"{work}: {error}; {RERUN}") from None
    runs = record.get("runs")
    if not isinstance(runs, list) or not runs or "cohort" not in record:
        raise IncompleteRunError(f"{results / REPORT_DONE}: does not name the runs and cohort the "
                                 f"report read; {RERUN}")
    source = results / REPORT_DONE
    changed = [reason for reason in ([changed_entry(work, e, source=f"{source}: runs[{i}]")
                                      for i, e in enumerate(runs)]
                                     + [changed_entry(work, record["cohort"], COHORT_DONE,
                                                      f"{source}: cohort")])
               if reason] or changed_run_inputs(work, runs, source)
    if changed:
        raise IncompleteRunError(
            f"{results}: the report no longer matches what it was made from: "
            + "; ".join(changed) + f"; {RERUN}")
    return record


def aurocs_path(work: str | os.PathLike) -> Path:
    """WORK/results/auroc_by_split.csv, the per-split AUROCs the analyses of results/ read."""
    return Path(work) / "results" / "auroc_by_split.csv"


def read_report_aurocs(work: str | os.PathLike) -> tuple[AurocsBySplit, dict]:
    """WORK/results/auroc_by_split.csv of a finished, still valid report, and its record."""
    record = read_report(work)
    return read_auroc_by_split(aurocs_path(work)), record


def mismatched_runs(used, read) -> str | None:
    """Why the runs a stage used (its recorded `run_entry`s) are not among the runs a report
    read (same folder, same done.json sha256), or None when they all are."""
    if not isinstance(used, list) or not used:
        return "its completion record does not name the runs it used"
    by_folder = {e["folder"]: e["done_sha256"] for e in read}
    for entry in used:
        folder = entry.get("folder") if isinstance(entry, dict) else None
        if folder not in by_folder:
            return f"it used {folder}, which this report did not read"
        if entry.get("done_sha256") != by_folder[folder]:
            return f"{folder} was trained again after it ran (its done.json differs)"
    return None
