"""Completion records of the cxrseg stages, and the check a reader makes before trusting a file.

Each stage calls `cxrstats.foundation.fileio.begin_run` when it starts and `write_done` last; the
record sits in the stage's output folder and lists the files it vouches for. A reader of one of
those files calls `require_finished(path, RECORD, stage)`: the record must exist beside the file and
list its name, so a file left by a killed run (or a stale file beside another run's record) is
refused. Post-processed masks are read through `require_postprocessed`, which also refuses masks
made from raw masks that predict has replaced since.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cxrstats.foundation.fileio import (IncompleteRunError, current_sha256, read_done,
                                        recorded_outputs, write_json)

SPLIT = "done_split.json"              # seg/: splits.csv
FINETUNE = "done_finetune.json"        # seg/: best.pt, last.pt, curves.csv, prior.json
EVALUATE = "done_evaluate.json"        # seg/: eval.csv, eval_per_image.csv
PREDICT = "done_predict.json"          # masks/: raw.npy (or PNG masks), index.csv, prompts.csv
POSTPROCESS = "done_postprocess.json"  # masks/: eroded.npy, m<r>.npy, qc.csv
# Both records hold `raw_sha256`, the sha256 of raw.npy as predict (or gather) wrote it and as
# postprocess read it: post-processed masks are current only while the two are equal.
# done_postprocess.json also holds each of its files' sha256 (content_facts), which its readers
# check for the files they read.
SEGFIGURES = "done_segfigures.json"    # results/figures/: seg_loss_curves.png, mask_panels.png
# A prediction into a folder of PNG masks writes the files it will write here before any of them
# (removed when done_predict.json is written): a later run removes what a killed one left.
PREDICT_STARTED = "started_predict.json"

# What predicted masks depend on beyond predict's flags, recorded in done_predict.json (by predict
# and gather) and compared by gather across shards, in this order: fact -> what it names in
# messages. The extent comes first: shards of two extents are named as such, not only as two
# checkpoints.
MASK_FACTS = {
    "extent": "lung extent (cxrseg.engine.checkpoint_extent: field, full or none)",
    "checkpoint_id": "checkpoint (cxrseg.engine.checkpoint_id: sha256 of the weights file)",
    "threshold": "binarization threshold",
    "precision": "network precision (--precision resolved: fp32 or bf16)",
    "prior_sha256": "prior.json (sha256 of the file)",
    "images_sha256": "image stack (sha256 of the .npy file, or of a folder's names and pixels)",
    "index_sha256": "image index (sha256 of all its `row,image` rows)",
    "total_images": "number of images",
}

# prompts.csv of predict (and gather): per image the prior box it was first prompted with and the
# final box, in its pixels
PROMPT_COLUMNS = ["row", "image", "prior_x0", "prior_y0", "prior_x1", "prior_y1",
                  "x0", "y0", "x1", "y1"]

FINETUNE_STAGE = "cxrseg.finetune"     # the "stage" entry of the checkpoints cxrseg.finetune writes


def require_finished(path: str | os.PathLike, record: str, stage: str) -> dict:
    """The completion record `record` beside `path`, which must list `path`'s name as an output
    and, where the record holds each file's sha256 (`content_facts`), vouch for `path`'s bytes
    (only `path` is hashed, once per process: `read_done`'s `files`).

    Raises IncompleteRunError naming the file and the stage to re-run otherwise."""
    path = Path(path)
    done = read_done(path.parent, record, what=f"{stage} run", files=[path.name])
    outputs = done.get("outputs", [])
    if path.name not in outputs:
        raise IncompleteRunError(f"{path}: {path.parent / record} vouches for {outputs}, not for "
                                 f"{path.name}; re-run {stage} with this output")
    return done


def check_raw_sha256(path: str | os.PathLike, record: dict) -> None:
    """IncompleteRunError naming raw.npy (`path`) unless its bytes are those done_predict.json
    beside it (read as `record`) records as `raw_sha256` (hashed once per process); a record
    without it (a prediction into PNG masks) passes."""
    path = Path(path)
    if record.get("raw_sha256") and current_sha256(path) != record["raw_sha256"]:
        raise IncompleteRunError(
            f"{path}: changed since the cxrseg.predict run wrote it (its sha256 is not the "
            f"raw_sha256 {path.parent / PREDICT} vouches for: edited, truncated or copied from "
            "another run); re-run cxrseg.predict")


def check_made_from_current_raw(folder: str | os.PathLike, record: dict) -> None:
    """IncompleteRunError unless the post-processed masks of `record` (done_postprocess.json in
    `folder`) were made from the raw.npy that done_predict.json there vouches for now: their
    `raw_sha256` facts must be equal (predict run again since leaves them unequal)."""
    folder = Path(folder)
    made_from = record.get("raw_sha256")
    current = read_done(folder, PREDICT, what="cxrseg.predict run").get("raw_sha256")
    if made_from is None or current is None:
        which = POSTPROCESS if made_from is None else PREDICT
        raise IncompleteRunError(f"{folder / which}: records no raw_sha256, so the post-processed "
                                 "masks cannot be matched to the raw masks; re-run cxrseg.predict "
                                 "and cxrseg.postprocess")
    if made_from != current:
        raise IncompleteRunError(f"{folder}: the post-processed masks were made from another "
                                 f"raw.npy than the one {PREDICT} vouches for now (cxrseg.predict "
                                 "ran again since); re-run cxrseg.postprocess")


def require_postprocessed(path: str | os.PathLike) -> dict:
    """`require_finished(path, POSTPROCESS, ...)` for a post-processed mask file, also refused when
    it was made from other raw masks than the current ones (`check_made_from_current_raw`)."""
    done = require_finished(path, POSTPROCESS, "cxrseg.postprocess")
    check_made_from_current_raw(Path(path).parent, done)
    return done


def write_predict_started(folder: str | os.PathLike, outputs: Iterable[str]) -> None:
    """Record in `folder` the files a prediction is about to write (PREDICT_STARTED), before it
    writes any of them."""
    write_json(Path(folder) / PREDICT_STARTED, {"outputs": list(outputs)})


def previous_predict_outputs(folder: str | os.PathLike) -> list[str]:
    """The files an earlier prediction in `folder` wrote or was about to write: the outputs of its
    done_predict.json (finished) and of its started_predict.json (killed or failed). A later run
    removes them before it writes; a record naming a file outside the folder (absolute, `..`) is
    refused, naming the record (`recorded_outputs`)."""
    folder = Path(folder)
    names = []
    # read without read_done: a mask deleted since must not hide the others
    for name, what in ((PREDICT, "completion record"),
                       (PREDICT_STARTED, "record of a started prediction")):
        path = folder / name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except ValueError:
            raise IncompleteRunError(f"{path}: not a readable {what}; remove the folder's masks "
                                     "and the record by hand") from None
        names += recorded_outputs(path, record)
    return list(dict.fromkeys(names))


def is_finetune_checkpoint(obj) -> bool:
    """True for a checkpoint that cxrseg.finetune wrote (best.pt, last.pt, or a copy of one): it
    carries "stage". Official weight files (a raw state dict) and other training scripts' files do
    not."""
    return isinstance(obj, Mapping) and obj.get("stage") == FINETUNE_STAGE


def index_rows_sha256(rows: Iterable[tuple]) -> str:
    """sha256 (hex) of index rows `(row, image)` written as `row,image` lines: the same rows give
    the same hash whether they come from names in memory or from an index.csv."""
    digest = hashlib.sha256()
    for row, image in rows:
        digest.update(f"{row},{image}\n".encode())
    return digest.hexdigest()
