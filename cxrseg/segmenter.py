"""The segmenter folder (a work folder's seg/) as one thing: everything cxrseg.predict needs to
segment new images the way the pipeline does.

A finished segmenter folder holds best.pt, prior.json and shape_prior.json (vouched for by
done_finetune.json) and eval.csv (done_evaluate.json). The evaluation's record carries the fact
`prompting`: the recipe under which evaluate chose the threshold (prompt mode, box source, refine
passes, hole filling, largest components), written from evaluate's own arguments. So the recipe
is defined once, by evaluate's flags (EVALUATE_ARGS in profiles/*.mk), and predict reads it:

- checkpoint: --checkpoint, else DIR/best.pt;
- prior: --prior, else DIR/prior.json;
- threshold: --threshold, else the one evaluate chose on validation for the checkpoint's content
  (cxrseg.engine.checkpoint_id) in --threshold-from, else in DIR/eval.csv (re-derived from its
  rows by cxrseg.threshold_rule, with the tolerance the evaluation recorded; 0 in a record without
  one);
- prompting: each of --prompt, --refine, --fill-holes / --no-fill-holes, --keep-largest, else the
  recipe of that evaluation.

DIR is --segmenter, or else the folder of a --checkpoint file that holds done_finetune.json. With
--segmenter a missing evaluation is refused (unless --threshold is given); without one (a built-in
checkpoint such as `lite`, or a folder never evaluated) the threshold is 0.5, one pass, the mask
not cleaned, and predict says so on stderr.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from cxrstats.foundation.fileio import read_csv

from .datasets import POOLED
from .engine import checkpoint_id, checkpoint_kind
from .records import EVALUATE, FINETUNE, require_finished
from .threshold_rule import choose_threshold

# The prompting settings predict takes from the recipe, and their values without one.
PROMPTING_DEFAULTS = {"prompt": "box", "refine": 0, "fill_holes": False, "keep_largest": 0}
DEFAULT_THRESHOLD = 0.5
EVAL_TABLE = "eval.csv"


def prompting_fact(args) -> dict:
    """The recipe evaluate records in done_evaluate.json (`prompting`), from its arguments."""
    return {"box_source": args.box_source, **{k: getattr(args, k) for k in PROMPTING_DEFAULTS}}


def threshold_from_eval(path: str | Path, identity: str, checkpoint: str,
                        tolerance: float = 0.0) -> float:
    """The threshold that cxrseg.evaluate chose on validation for the checkpoint whose content is
    `identity` (cxrseg.engine.checkpoint_id; `checkpoint` is its spelling, for messages), by the
    same rule (cxrseg.threshold_rule, with the evaluation's `tolerance`) on the mean val Dice,
    over all datasets pooled when eval.csv has several. ValueError naming the file when eval.csv
    has no validation rows or evaluated other weights."""
    rows = read_csv(path, required=["checkpoint", "part", "threshold", "dice"])
    if rows and "checkpoint_id" not in rows[0]:
        raise ValueError(f"{path}: has no checkpoint_id column, so the checkpoint it evaluated "
                         "cannot be matched by content; re-run cxrseg.evaluate")
    val = [r for r in rows if r["part"] == "val"]
    if not val:
        raise ValueError(f"{path}: has no validation rows (the evaluation had no validation part, "
                         "e.g. --parts test), so it chose no threshold; give --threshold, or "
                         "re-run cxrseg.evaluate with the validation part (--parts val test)")
    rows = [r for r in val if r["checkpoint_id"] == identity]
    if not rows:
        evaluated = sorted({f"{r['checkpoint']} ({r['checkpoint_id']})" for r in val})
        raise ValueError(f"{path}: no validation rows for checkpoint {checkpoint} "
                         f"({identity}); it evaluated {', '.join(evaluated) or 'nothing'}. The "
                         "weights differ (e.g. fine-tuned again since): re-run cxrseg.evaluate, "
                         "or give the checkpoint it evaluated")
    pooled = [r for r in rows if r.get("dataset") == POOLED]   # several datasets: pooled rows
    rows = pooled or rows
    return choose_threshold({float(r["threshold"]): float(r["dice"]) for r in rows}, tolerance)


@dataclass
class Resolved:
    """Where predict's settings came from: `sources` {setting: flag / file}, the segmenter folder
    (None without one) and its shape_prior.json when it has a finished one."""
    folder: Path | None
    sources: dict[str, str] = field(default_factory=dict)
    shape_prior: Path | None = None


def segmenter_folder(args) -> Path | None:
    """--segmenter, or the folder of a --checkpoint file that cxrseg.finetune wrote there."""
    if args.segmenter:
        folder = Path(args.segmenter)
        if not folder.is_dir():
            raise FileNotFoundError(f"--segmenter {folder}: folder not found (a work folder's "
                                    "seg/, made by `make segmenter` or `make reproduce`)")
        return folder
    if args.checkpoint and checkpoint_kind(args.checkpoint) == "file":
        folder = Path(args.checkpoint).parent
        if (folder / FINETUNE).is_file():
            return folder
    return None


def apply_segmenter(args) -> Resolved:
    """Fill in predict's arguments left out (None) from the segmenter folder, in place, by the rule
    in the module docstring; returns where each came from. ValueError / FileNotFoundError /
    IncompleteRunError naming what is missing."""
    if args.threshold is not None and args.threshold_from:
        raise ValueError("give --threshold or --threshold-from, not both")
    folder = segmenter_folder(args)
    resolved = Resolved(folder)
    sources = resolved.sources
    for name in ("checkpoint", "prior"):
        sources[name] = f"--{name}"
        if getattr(args, name) is None:
            if folder is None:
                raise ValueError(f"no --{name}: give --segmenter DIR (a work folder's seg/) or "
                                 f"--{name}")
            path = folder / ("best.pt" if name == "checkpoint" else "prior.json")
            require_finished(path, FINETUNE, "cxrseg.finetune")
            setattr(args, name, str(path))
            sources[name] = str(path)
    if folder is not None and (folder / "shape_prior.json").is_file():
        done = require_finished(folder / "best.pt", FINETUNE, "cxrseg.finetune")
        if "shape_prior.json" in done["outputs"]:
            resolved.shape_prior = folder / "shape_prior.json"

    evaluation = find_evaluation(args, folder)
    recipe = {}
    if evaluation is not None:
        record = require_finished(evaluation, EVALUATE, "cxrseg.evaluate")
        recipe = recipe_of(record, evaluation)
        if args.threshold is None:
            args.threshold = threshold_from_eval(
                evaluation, checkpoint_id(args.checkpoint, args.seed), args.checkpoint,
                float(record.get("threshold_tolerance", 0.0)))
            sources["threshold"] = str(evaluation)
    defaulted = []
    for key, default in {"threshold": DEFAULT_THRESHOLD, **PROMPTING_DEFAULTS}.items():
        if getattr(args, key) is not None:
            sources.setdefault(key, f"--{key.replace('_', '-')}")
        elif key in recipe:
            setattr(args, key, recipe[key])
            sources[key] = f"recipe in {Path(evaluation).parent / EVALUATE}"
        else:
            setattr(args, key, default)
            sources[key] = "default"
            defaulted.append(key)
    if defaulted:
        print(f"predict: note: no evaluation of {args.checkpoint} to take the recipe from, so "
              f"{', '.join(defaulted)} at the defaults (threshold {args.threshold:g}, "
              f"{args.refine} refine pass(es), holes {'filled' if args.fill_holes else 'kept'}); "
              "give --segmenter DIR (evaluated by cxrseg.evaluate) for the recommended recipe",
              file=sys.stderr, flush=True)
    return resolved


def find_evaluation(args, folder: Path | None) -> Path | None:
    """The eval.csv the threshold and recipe come from: --threshold-from, else the segmenter
    folder's. A --segmenter folder without one is refused unless --threshold is given."""
    if args.threshold_from:
        return Path(args.threshold_from)
    if folder is None:
        return None
    if (folder / EVALUATE).is_file():
        return folder / EVAL_TABLE
    if args.segmenter and args.threshold is None:
        raise FileNotFoundError(f"--segmenter {folder}: no {EVALUATE}, so no threshold chosen on "
                                "validation and no recipe; run cxrseg.evaluate there (`make "
                                "segmenter` runs split, fine-tune and evaluate), or give "
                                "--threshold")
    return None


def recipe_of(record: dict, evaluation: Path) -> dict:
    """The `prompting` fact of an evaluation's completion record; ValueError when it has none."""
    recipe = record.get("prompting")
    if not isinstance(recipe, dict) or not set(PROMPTING_DEFAULTS) <= set(recipe):
        raise ValueError(f"{Path(evaluation).parent / EVALUATE}: records no prompting recipe "
                         f"(keys {sorted(PROMPTING_DEFAULTS)}); re-run cxrseg.evaluate")
    return recipe
