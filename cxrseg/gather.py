"""Join the shard folders of `cxrseg.predict --shard K/N` into one masks/raw.npy + index.csv.

Each shard folder holds its rows' masks (raw.npy), index.csv (global row numbers), prompts.csv and
its done_predict.json. The shards are accepted only when all N of one split are there, finished,
made from the same content (lung extent, checkpoint, threshold, prior, image stack and index: the
facts cxrseg.records.MASK_FACTS that each shard's record carries; paths may be spelled
differently) and with the same other arguments (apart from --shard and --out), each shard's
index.csv holds the rows its record vouches for, and together their rows cover 0..n-1 once, in
order. The joined folder gets the same files and completion record as an unsharded
`cxrseg.predict`, so the post-processing reads it unchanged. As in predict, all masks empty fails.

    python -m cxrseg.gather --shards work/demo/masks/shards/0of2 \\
        work/demo/masks/shards/1of2 --out work/by-hand/masks/raw.npy
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, file_sha256, load_npy, read_csv,
                                        save_npy, write_csv, write_done, write_run_json)

from .records import MASK_FACTS, PREDICT, PROMPT_COLUMNS, index_rows_sha256, require_finished

# Arguments that may differ between the shards of one prediction: the shard itself, and paths
# whose content the MASK_FACTS compare (so that `x/seg/best.pt` and `../x/seg/best.pt` agree; the
# segmenter folder by the checkpoint, prior and threshold taken from it).
PER_SHARD = {"shard", "out"}
BY_CONTENT = {"images", "index", "checkpoint", "prior", "threshold_from", "segmenter"}


def read_shards(folders: list[Path]) -> list[dict]:
    """Each shard's completion record, in shard order; ValueError / IncompleteRunError naming the
    folder when one is missing, unfinished, unsharded, duplicated or made differently."""
    records = []
    for folder in folders:
        done = require_finished(folder / "raw.npy", PREDICT, "cxrseg.predict --shard")
        if "shard" not in done:
            raise ValueError(f"{folder}: not a shard (made without cxrseg.predict --shard)")
        records.append({**done, "folder": folder})
    records.sort(key=lambda r: r["shard"][0])
    parts = records[0]["shard"][1]
    found = [r["shard"][0] for r in records]
    if [r["shard"][1] for r in records] != [parts] * len(records) or found != list(range(parts)):
        names = ", ".join(f"{r['folder']} ({r['shard'][0]}/{r['shard'][1]})" for r in records)
        raise ValueError(f"shards must be 0..N-1 of one N, each once; got {names}")
    check_same_content(records)
    ignored = PER_SHARD | BY_CONTENT
    first = {k: v for k, v in records[0]["arguments"].items() if k not in ignored}
    for r in records[1:]:
        other = {k: v for k, v in r["arguments"].items() if k not in ignored}
        changed = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if changed:
            raise ValueError(f"{r['folder']}: made with other arguments than "
                             f"{records[0]['folder']} ({', '.join(changed)})")
    return records


def check_same_content(records: list[dict]) -> None:
    """ValueError naming the shard and the fact when a shard's record lacks a MASK_FACTS entry
    or differs from the first shard's in one: its masks come from other weights, threshold,
    prior or images."""
    for r in records:
        missing = [fact for fact in [*MASK_FACTS, "rows_sha256"] if fact not in r]
        if missing:
            raise ValueError(f"{r['folder']}: its {PREDICT} does not record {', '.join(missing)} "
                             "(what its masks depend on); re-run cxrseg.predict for this shard")
    first = records[0]
    for r in records[1:]:
        for fact, what in MASK_FACTS.items():
            if r[fact] != first[fact]:
                raise ValueError(f"{r['folder']}: made from another {what} than "
                                 f"{first['folder']} ({fact}: {r[fact]} vs {first[fact]}); "
                                 "re-run cxrseg.predict for every shard with the same inputs")


def gather(records: list[dict]) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    """(n, H, W) uint8 masks, index rows and prompt rows of the shards joined in row order."""
    masks, index, prompts = [], [], []
    for r in records:
        folder = r["folder"]
        raw = load_npy(folder / "raw.npy")
        rows = read_csv(folder / "index.csv", required=["row", "image"])
        if index_rows_sha256((row["row"], row["image"]) for row in rows) != r["rows_sha256"]:
            raise ValueError(f"{folder / 'index.csv'}: not the rows its {PREDICT} vouches for "
                             "(changed since); re-run cxrseg.predict for this shard")
        if len(rows) != len(raw):
            raise ValueError(f"{folder}: index.csv has {len(rows)} rows, raw.npy {len(raw)} masks")
        if masks and raw.shape[1:] != masks[0].shape[1:]:
            raise ValueError(f"{folder}: masks of size {raw.shape[1:]}, the first shard's "
                             f"{masks[0].shape[1:]}")
        for row in rows:
            if row["row"] != str(len(index)):
                raise ValueError(f"{folder / 'index.csv'}: row {row['row']} where row "
                                 f"{len(index)} was due; the shards do not cover the images once, "
                                 "in order")
            index.append([row["row"], row["image"]])
        masks.append(raw)
        prompts += [[p[c] for c in PROMPT_COLUMNS]
                    for p in read_csv(folder / "prompts.csv", required=PROMPT_COLUMNS)]
    total = records[0]["total_images"]
    if len(index) != total:
        raise ValueError(f"the shards hold {len(index)} of {total} images")
    return np.concatenate(masks), index, prompts


def build_parser() -> Parser:
    parser = Parser(prog="python -m cxrseg.gather", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", nargs="+", required=True,
                        help="the N shard folders of cxrseg.predict --shard K/N")
    parser.add_argument("--out", required=True, help="masks/raw.npy (index.csv etc. beside it)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    started = time.time()
    out = Path(args.out)
    folder = out.parent
    outputs = [out.name, "index.csv", "prompts.csv", "run_predict.json"]
    try:
        if out.suffix != ".npy":
            raise ValueError(f"--out {out}: expected a .npy file (masks/raw.npy)")
        records = read_shards([Path(f) for f in args.shards])
        raw, index, prompts = gather(records)
        threshold = records[0]["threshold"]
        empty = [name for (_, name), mask in zip(index, raw) if not mask.any()]
        if len(empty) == len(raw):
            raise ValueError(f"all {len(raw)} predicted masks are empty at threshold "
                             f"{threshold:g}: the segmenter or the threshold is wrong; the run is "
                             "not marked finished")
        begin_run(folder, outputs, done=PREDICT)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    save_npy(out, raw)
    write_csv(folder / "index.csv", ["row", "image"], index)
    write_csv(folder / "prompts.csv", PROMPT_COLUMNS, prompts)
    shards = [str(r["folder"]) for r in records]
    facts = {fact: records[0][fact] for fact in MASK_FACTS}
    degenerate = [item for r in records for item in r.get("degenerate", [])]
    # precision: the shards' own (a MASK_FACTS entry, equal in every shard), as predict records it
    write_run_json(folder, args, name="run_predict.json", seconds=time.time() - started,
                   precision=facts["precision"], threshold=threshold, images=len(raw),
                   shards=shards)
    write_done(folder, records[0]["arguments"] | {"shard": None, "out": str(out)}, outputs,
               done=PREDICT, images=len(raw), empty=len(empty), degenerate=degenerate, **facts,
               rows_sha256=index_rows_sha256(index), shards=shards, raw_sha256=file_sha256(out))
    print(f"gather: {len(records)} shards, {len(raw)} masks ({len(empty)} empty, "
          f"{len(degenerate)} degenerate image(s)), threshold {threshold:.2f} -> {out}")


if __name__ == "__main__":
    main()
