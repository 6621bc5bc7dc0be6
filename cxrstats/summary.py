"""The report's summary.md: warnings first (a random segmenter, skipped runs), then what was run,
the headline results, the shortcut audit, the segmentation, notes and every output file.

Reads the tables already written to --out (table2.md, table3.md) and a few provenance files under
WORK (cohort/run.json, seg/run_finetune.json, seg/curves.csv); results/attribution.csv when present
and made by cxrcls.attribution from the very runs the report read (else one line says why it is
left out).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrstats.foundation.fileio import (IncompleteRunError, atomic_path, file_sha256, git_commit,
                                        read_csv, read_done)
from cxrstats.formatting import cell, markdown_table, short
from cxrstats.foundation.extent import describe
from cxrstats.results import (ATTRIBUTION_DONE, MASKS_POSTPROCESS_DONE, REPORT_DONE, masks_extent,
                              mismatched_runs)
from cxrstats.runs import Cohort, Setting
from cxrstats.scoring import RunResult
from cxrstats.study import LABELS

# cxrseg's completion records (cxrseg.records.FINETUNE, POSTPROCESS; cxrstats imports no cxrseg)
SEG_FINETUNE_DONE = "done_finetune.json"
SEG_POSTPROCESS_DONE = "done_postprocess.json"

DESCRIPTIONS = {
    "table1.csv": "Table 1: images per label in the cohort (copied from cohort/table1.csv)",
    "table1.md": "Table 1 as Markdown",
    "table2.csv": "Table 2: test AUROC ×100 per label, macro, No Finding (mean ± sd over splits), "
                  "training minutes",
    "table2.md": "Table 2 as Markdown",
    "table3.csv": "Table 3: macro and No Finding precision/recall/F1 ×100 at validation-tuned "
                  "thresholds",
    "table3.md": "Table 3 as Markdown",
    "auroc_by_split.csv": "per-split, unrounded AUROC behind Table 2, with bootstrap 95% intervals "
                          "(ci_low, ci_high) and the findings each macro averages "
                          "(macro_n_findings)",
    "prf_by_split.csv": "per-split thresholds and precision/recall/F1 behind Table 3",
    "ttests.csv": "paired t-tests over splits between every pair of settings, Holm-adjusted p per "
                  "metric (p_holm), DeLong p per split for the headline pairs (delong_p)",
    "delong.csv": "DeLong's test per split, label and macro AUROC for the headline pairs "
                  "(original vs M-15 / M-50 per backbone)",
    "mantel.csv": "Spearman Mantel test per run: true vs predicted test co-occurrence (6 labels)",
    "attribution.csv": "Grad-CAM share of positive attribution inside the lungs per setting, split "
                       "and label (cxrcls.attribution)",
    "attribution_per_image.csv": "the same per test image (cxrcls.attribution)",
    "attribution.md": "attribution table as Markdown (cxrcls.attribution)",
    "figures/attribution_panels.png": "Grad-CAM heat maps over test images, lung outline drawn "
                                      "(cxrcls.attribution)",
    "run_attribution.json": "cxrcls.attribution's arguments and provenance",
    "done_attribution.json": "cxrcls.attribution's completion record",
    "tightness.csv": "AUROC against the mask's dilation radius (cxrstats.tightness)",
    "figures/tightness.png": "AUROC against the mask's dilation radius (cxrstats.tightness)",
    "run_tightness.json": "cxrstats.tightness's arguments and provenance",
    "done_tightness.json": "cxrstats.tightness's completion record",
    "figures/cooccurrence_dataset.png": "label co-occurrence counts in the whole cohort",
    "figures/roc_curves.png": "test ROC curves per label, derived No Finding dashed, two settings",
    "figures/cooccurrence_predicted.png": "test-set true vs predicted label co-occurrence",
    "figures/seg_loss_curves.png": "segmentation fine-tuning loss curves (cxrseg.figures)",
    "figures/mask_panels.png": "example lung masks: raw, eroded, M-15, M-50 (cxrseg.figures)",
    "figures/worst_masks.png": "the least plausible raw masks, for review (cxrseg.figures --worst)",
    "figures/run_segfigures.json": "cxrseg.figures' arguments and provenance",
    "figures/done_segfigures.json": "cxrseg.figures' completion record",
    "run.json": "the report's arguments, git commit and package versions",
    "summary.md": "this summary",
    REPORT_DONE: "the report's completion record: its files, and the runs and cohort it read "
                 "(sha256 of each done.json)",
}


@dataclass
class AttributionCheck:
    """cxrcls.attribution's output found beside the report: shown in summary.md only when its
    completion record names exactly runs the report read, with the same done.json."""
    path: Path                   # attribution.csv
    reason: str | None           # why it is left out; None: shown
    done_sha256: str | None      # sha256 of its done_attribution.json, when there is one

    def fact(self) -> dict:
        """For the report's completion record."""
        return {"file": str(self.path), "included": self.reason is None, "reason": self.reason,
                "done_sha256": self.done_sha256}


def check_attribution(folders: list[Path], runs: list[dict]) -> AttributionCheck | None:
    """The first of `folders` holding attribution.csv (or its record), checked against the runs
    the report read (`runs`: cxrstats.results.run_entry); None when there is none."""
    folder = next((f for f in folders
                   if (f / "attribution.csv").is_file() or (f / ATTRIBUTION_DONE).is_file()), None)
    if folder is None:
        return None
    path = folder / "attribution.csv"
    try:
        record = read_done(folder, ATTRIBUTION_DONE, what="attribution (cxrcls.attribution)")
    except IncompleteRunError as error:
        return AttributionCheck(path, str(error), None)
    return AttributionCheck(path, mismatched_runs(record.get("runs"), runs),
                            file_sha256(folder / ATTRIBUTION_DONE))


@dataclass
class SummaryInputs:
    """Everything summary.md shows, gathered by cxrstats.report."""
    work: Path
    out: Path
    args: object                               # the report's argparse.Namespace
    cohort: Cohort
    splits: dict[int, dict[str, str]]
    settings: list[Setting]
    results: dict[str, list[RunResult]]
    ttest_rows: list[dict]
    runs: list[dict]                           # the runs read: cxrstats.results.run_entry
    attribution: AttributionCheck | None = None
    warnings: list[str] = field(default_factory=list)   # shown first, in bold
    notes: list[str] = field(default_factory=list)


def random_segmenter_warning(work: Path) -> str | None:
    """A warning when seg/run_finetune.json shows the segmenter started from random weights
    (`--checkpoint micro` or `--config micro`): its masks, and every masked setting, are
    meaningless."""
    path = work / "seg" / "run_finetune.json"
    if not path.is_file():
        return None
    try:
        arguments = json.loads(path.read_text()).get("arguments") or {}
    except (OSError, ValueError, AttributeError):
        return f"{path} is unreadable: cannot tell which segmenter made the masks"
    if arguments.get("checkpoint") == "micro" or arguments.get("config") == "micro":
        return (f"THE SEGMENTER WAS A RANDOM MODEL ({path}: "
                f"checkpoint={arguments.get('checkpoint')}, config={arguments.get('config')}). "
                "Its lung masks are meaningless, and so is every masked setting's result "
                "(m<r>, overlay). Install the LiteMedSAM weights (make setup) or give a real "
                "checkpoint, and run again.")
    return None


def _float(text: str | None) -> float:
    """A CSV number; an empty field (undefined) is NaN. None is the cell of a row shorter than the
    header (csv.DictReader's filler): ValueError."""
    if text is None:
        raise ValueError("a row has fewer cells than the header")
    return float(text) if text.strip() else float("nan")


def attribution_section(check: AttributionCheck | None) -> list[str]:
    """The Grad-CAM table when `check` passed, one line saying why not when it did not, nothing
    without an attribution."""
    if check is None:
        return []
    if check.reason is not None:
        return [f"**Grad-CAM table left out (`{check.path}`): {check.reason}. Re-run the "
                "attribution (`make attribution`, or python -m cxrcls.attribution) to show it.**",
                ""]
    return attribution_table(check.path)


def attribution_table(path: Path) -> list[str]:
    """summary.md lines for attribution.csv at `path`: mean in-lung share of positive Grad-CAM
    attribution over splits, per setting and label, with the chance level (the lung's share of the
    image). An unreadable file: one line saying why."""
    columns = ["setting", "split", "label", "in_lung_share", "chance_level", "n_images"]
    try:
        rows = read_csv(path, required=columns)
        values = [(r["setting"], r["label"], _float(r["in_lung_share"]), _float(r["chance_level"]))
                  for r in rows]
    except ValueError as error:
        return ["### Where the classifiers look", "", f"`{path}` is unreadable: {error}", ""]
    settings = list(dict.fromkeys(v[0] for v in values))
    found = list(dict.fromkeys(v[1] for v in values))
    labels = [x for x in LABELS if x in found] + [x for x in found if x not in LABELS]
    body = []
    for setting in settings:
        chance = [v[3] for v in values if v[0] == setting and np.isfinite(v[3])]
        row = [setting, f"{np.mean(chance):.2f}" if chance else "n/a"]
        for label in labels:
            shares = [v[2] for v in values if v[0] == setting and v[1] == label]
            row.append(cell(shares, 2) if shares else "")
        body.append(row)
    return ["### Where the classifiers look (Grad-CAM)", "",
            f"From `{path}`: share of positive attribution inside the raw lung mask, mean ± sd "
            "over splits, against the chance level (the lung's share of the image).", "",
            markdown_table(["setting", "chance", *labels], body)]


def describe_args(runs: list[RunResult]) -> str:
    """The runs' run.json arguments: those shared by every split once, then those that vary."""
    args = [r.run_args for r in runs if r.run_args]
    if not args:
        return "no run.json in the run folders"
    keys = list(dict.fromkeys(k for a in args for k in a))
    same = {k: args[0].get(k) for k in keys if all(a.get(k) == args[0].get(k) for a in args)}
    varying = [k for k in keys if k not in same]
    text = ", ".join(f"`{k}={v}`" for k, v in same.items())
    if varying:
        text += "; varying across splits: " + ", ".join(f"`{k}`" for k in varying)
    return text


def require_listed(path: Path, record: str, stage: str) -> None:
    """IncompleteRunError unless the completion record `record` beside `path` lists it, and holds
    its bytes where it records each file's sha256: a file of an unfinished (killed, resumed,
    running) run of `stage`, or one edited since, is not read. Only `path` is hashed."""
    done = read_done(path.parent, record, what=f"{stage} run", files=[path.name])
    if path.name not in done.get("outputs", []):
        raise IncompleteRunError(f"{path.parent / record} does not list {path.name}")


def seg_summary(work: Path) -> list[str]:
    """Lines on the segmenter's fine-tuning, from seg/curves.csv of a finished run."""
    curves_path = work / "seg" / "curves.csv"
    if not curves_path.is_file():
        return ["No segmentation run found (no seg/curves.csv)."]
    try:
        require_listed(curves_path, SEG_FINETUNE_DONE, "cxrseg.finetune")
        rows = read_csv(curves_path, required=["epoch", "part", "loss"])
    except (IncompleteRunError, ValueError) as error:
        return [f"**`{curves_path}` not read ({error}).**"]
    lines = [f"`{curves_path}`: {len({r['epoch'] for r in rows})} epoch(s) of fine-tuning."]
    for part in ("train", "val"):
        losses = [(float(r["loss"]), r["epoch"]) for r in rows if r["part"] == part and r["loss"]]
        if losses:
            best = min(losses)
            lines.append(f"{part} loss: last {losses[-1][0]:.4f}, lowest {best[0]:.4f} "
                         f"(epoch {best[1]}).")
    return lines


def extent_lines(work: Path) -> list[str]:
    """The line on the lung extent of the masks (masks/done_postprocess.json's `extent`), none
    without masks."""
    extent = masks_extent(work)
    if extent is None:
        return []
    return [f"Lung masks' extent: **{extent}** (their segmenter was {describe(extent)}; from "
            f"`{work / 'masks' / MASKS_POSTPROCESS_DONE}`)."]


def flagged_masks(work: Path, limit: int = 20) -> list[str]:
    """Summary lines on the masks that `cxrseg.postprocess` flagged in masks/qc.csv (read only
    with its completion record), the least plausible first, at most `limit` listed."""
    qc_path = work / "masks" / "qc.csv"
    if not qc_path.is_file():
        return []
    try:
        require_listed(qc_path, SEG_POSTPROCESS_DONE, "cxrseg.postprocess")
        rows = read_csv(qc_path, required=["row", "image", "flag", "action"])
    except (IncompleteRunError, ValueError, FileNotFoundError) as error:
        return [f"**Mask QC: `{qc_path}` not read ({error}).**", ""]
    flagged = [r for r in rows if r["flag"] != "ok"]
    lines = [f"Mask QC (`{qc_path}`): {len(flagged)} of {len(rows)} masks flagged"
             + (" (none)." if not flagged else ", for review (`cxrseg.figures --worst N` draws "
                "them; `action` says what the pipeline did).")]
    if not flagged:
        return lines + [""]
    score = "shape_score" if "shape_score" in rows[0] else None
    if score:
        flagged.sort(key=lambda r: -np.nan_to_num(_float(r[score]), nan=np.inf))
    shown = flagged[:limit]
    columns = ["row", "image", "flag", "action"] + ([score] if score else [])
    lines += ["", markdown_table(columns, [[r[c] for c in columns] for r in shown]).rstrip()]
    if len(flagged) > limit:
        lines.append(f"\n... and {len(flagged) - limit} more in `{qc_path}`.")
    return lines + [""]


def _mean_text(values, decimals: int) -> str:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return f"{np.mean(finite):.{decimals}f}" if finite else "n/a"


def header_section(s: SummaryInputs) -> list[str]:
    lines = ["# Report summary", ""]
    lines += [f"**WARNING: {w}**\n" for w in s.warnings]
    lines += [f"Made by `python -m cxrstats.report` from `{s.work}` at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')} (code {git_commit()}). Report arguments: "
              + ", ".join(f"`{k}={v}`" for k, v in vars(s.args).items()) + ".", ""]
    return lines


def data_section(s: SummaryInputs) -> list[str]:
    cohort = s.cohort
    lines = ["## Data", "",
             f"- Cohort `{cohort.path}`: {len(cohort.images)} images; per label: "
             + ", ".join(f"{label} {int(n)}" for label, n in zip(LABELS, cohort.labels.sum(axis=0)))
             + "."]
    cohort_run = cohort.path.parent / "run.json"
    if cohort_run.is_file():
        try:
            cohort_args = json.loads(cohort_run.read_text()).get("arguments", {})
            lines.append("- Cohort made with: "
                         + ", ".join(f"`{k}={v}`" for k, v in cohort_args.items()) + ".")
        except (ValueError, AttributeError):
            lines.append(f"- `{cohort_run}` is unreadable.")
    for k in sorted(s.splits):
        parts = list(s.splits[k].values())
        lines.append(f"- Split {k}: "
                     + ", ".join(f"{p} {parts.count(p)}" for p in ("train", "val", "test")) + ".")
    return lines + [""]


def settings_section(s: SummaryInputs) -> list[str]:
    rows = [[x.name, x.arch, x.train_input, x.test_input,
             " ".join(str(r.split) for r in s.results[x.name]),
             "; ".join(sorted({r.threshold_source for r in s.results[x.name]})),
             _mean_text([r.epochs for r in s.results[x.name]], 1),
             _mean_text([r.train_minutes for r in s.results[x.name]], 2)] for x in s.settings]
    lines = ["## Settings", "",
             markdown_table(["setting", "arch", "train input", "test input", "splits", "thresholds",
                             "epochs (mean)", "train min (mean)"], rows).rstrip(), "",
             "Training arguments (from each run's run.json):", ""]
    return lines + [f"- {x.name}: {describe_args(s.results[x.name])}" for x in s.settings] + [""]


def results_section(s: SummaryInputs) -> list[str]:
    lines = ["## Results", "", (s.out / "table2.md").read_text().replace("# ", "### ", 1),
             (s.out / "table3.md").read_text().replace("# ", "### ", 1)]
    n_boot = getattr(s.args, "bootstrap", 0)
    if n_boot:
        lines += [f"Per-split stratified bootstrap 95% intervals ({n_boot} resamples) of every "
                  "AUROC are in `auroc_by_split.csv` (`ci_low`, `ci_high`).", ""]
    lines += ["### Headline comparisons", "",
              "Paired t-test over splits (p; p_holm: Holm-adjusted within each metric's family of "
              "all setting pairs) and DeLong's test on each split's test images (split:p).", ""]
    headline = [r for r in s.ttest_rows if r["headline"]]
    if headline:
        lines.append(markdown_table(
            ["metric", "a", "b", "t", "df", "p", "p_holm", "DeLong p per split", "note"],
            [[r["metric"], r["a"], r["b"], short(r["t"]), r["df"], short(r["p"]),
              short(r["p_holm"]), r["delong_p"], r["note"]] for r in headline]))
    else:
        lines.append("None: the settings do not include an architecture's original and M-15/M-50 "
                     "inputs.\n")
    permutations = s.args.permutations
    lines += ["### Mantel tests", "",
              "Spearman correlation between the test set's true and predicted 6x6 label "
              "co-occurrence (No Finding included), upper triangle; p from all 720 relabellings "
              "(exact) when "
              f"6! <= {permutations} permutations, else from {permutations} random ones.", ""]
    lines.append(markdown_table(["setting", "r (mean ± sd)", "p per split", "mode"],
                                [[name, cell([r.mantel.r for r in runs], 3),
                                  " ".join(f"{r.mantel.p:.3g}" for r in runs),
                                  "exact" if all(r.mantel.exact for r in runs) else "permutations"]
                                 for name, runs in s.results.items()]))
    return lines


def notes_section(s: SummaryInputs) -> list[str]:
    by_note: dict[tuple[str, str], list[str]] = {}  # one line per (setting, note)
    for runs in s.results.values():
        for r in runs:
            for n in r.notes:
                by_note.setdefault((r.setting.name, n), []).append(str(r.split))
    run_notes = [f"{name} split(s) {', '.join(ks)}: {n}" for (name, n), ks in by_note.items()]
    if not (s.notes or run_notes):
        return []
    return ["## Notes", ""] + [f"- {n}" for n in s.notes + run_notes] + [""]


def files_section(out: Path) -> list[str]:
    """Every file under `out` with what it is; hidden files (the folder marker, Make's stamps) and
    temporary ones are not listed, the report's record (written after this) is."""
    files = sorted({str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                    and not p.name.startswith(".") and not p.name.endswith(".tmp")}
                   | {"summary.md", REPORT_DONE})
    lines = ["## Files", "", f"All under `{out}`:", ""]
    return lines + [f"- `{f}`: {DESCRIPTIONS.get(f, 'other output found in this folder')}"
                    for f in files]


def write_summary(s: SummaryInputs) -> Path:
    """Write --out/summary.md from the sections above, in reading order."""
    attribution = attribution_section(s.attribution)
    segmentation = (["## Segmentation", ""]
                    + [f"- {x}" for x in extent_lines(s.work) + seg_summary(s.work)] + [""]
                    + flagged_masks(s.work))
    lines = (header_section(s) + data_section(s) + settings_section(s) + results_section(s)
             + attribution + segmentation
             + notes_section(s) + files_section(s.out))
    path = s.out / "summary.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
