"""The study's report: Tables 1-3, paired t-tests, Mantel tests and figures, from the files under WORK.

Reads only files (docs/DESIGN.md): cohort/{cohort,splits,table1}.csv; every runs/<setting>/split<k>/
folder ({val,test}_probs.npy with {val,test}_ids.csv, thresholds.csv, timing.json, history.csv,
run.json); seg/curves.csv and cxrseg's figures when present. Thresholds come from each run's
thresholds.csv (tuned on validation by the trainer); a run without one is tuned here, on its validation
predictions, by best F1. Test predictions are used only to score.

Writes into --out (default WORK/results): table1/2/3 (.csv and .md), auroc_by_split.csv,
prf_by_split.csv, ttests.csv, mantel.csv, figures/*.png, run.json and summary.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrstats.fileio import atomic_path, git_commit, read_csv, write_csv, write_run_json
from cxrstats.formatting import mean_sd
from cxrstats.hypothesis import MantelResult, mantel, paired_ttest
from cxrstats.metrics import auroc, best_f1_threshold, cooccurrence, no_finding_score, precision_recall_f1
from cxrstats.runs import (FINDINGS, LABELS, NO_FINDING, Cohort, Run, Setting, find_runs, parse_setting,
                           read_cohort, read_run, read_splits)

PARTIAL = "*"  # marks a cell averaged over fewer splits than the setting has (a metric undefined on some)


@dataclass
class RunResult:
    """Test-set scores of one run. Arrays over LABELS (5 findings, then No Finding)."""
    setting: Setting
    split: int
    aurocs: np.ndarray            # (6,), nan where the test set has one class for that label
    macro_auroc: float            # mean AUROC of the findings that are defined on this split
    thresholds: np.ndarray        # (6,)
    threshold_source: str         # "thresholds.csv" or "tuned on validation by the report"
    prf: np.ndarray               # (6, 3) precision, recall, F1 on test
    macro_prf: np.ndarray         # (3,) mean over the 5 findings
    mantel: MantelResult
    test_labels: np.ndarray       # (n, 6) truth
    test_probs: np.ndarray        # (n, 5)
    predicted: np.ndarray         # (n, 6) bool, at the thresholds
    train_minutes: float | None
    epochs: int | None
    run_args: dict | None
    notes: list[str] = field(default_factory=list)


def label_scores(probs: np.ndarray) -> np.ndarray:
    """(n, 5) finding probabilities -> (n, 6) scores with the derived No Finding score appended."""
    return np.column_stack([probs, no_finding_score(probs)])


def tune_thresholds(val_probs: np.ndarray, val_labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Best-F1 threshold of each label (No Finding on its derived score) on the validation set."""
    scores = label_scores(val_probs)
    notes = []
    thresholds = np.empty(len(LABELS))
    for j, label in enumerate(LABELS):
        thresholds[j] = best_f1_threshold(val_labels[:, j], scores[:, j]).threshold
        if not val_labels[:, j].any():
            notes.append(f"{label}: no positive in validation, threshold = highest score (F1 0)")
    return thresholds, notes


def evaluate_run(run: Run, permutations: int, seed: int) -> RunResult:
    """Score one run on its test set: AUROC per label, P/R/F1 at validation-tuned thresholds, Mantel."""
    notes = list(run.notes)
    if run.thresholds is not None:
        thresholds, source = run.thresholds, "thresholds.csv"
    else:
        thresholds, tune_notes = tune_thresholds(run.val_probs, run.val_labels)
        source = "tuned on validation by the report"
        notes += tune_notes
    scores = label_scores(run.test_probs)
    truth = run.test_labels
    aurocs = np.full(len(LABELS), np.nan)
    for j, label in enumerate(LABELS):
        if truth[:, j].min() == truth[:, j].max():
            notes.append(f"{label}: one class only in the test set, AUROC undefined")
        else:
            aurocs[j] = auroc(truth[:, j], scores[:, j])
    finding_aurocs = aurocs[:len(FINDINGS)]
    macro = float(np.mean(finding_aurocs[np.isfinite(finding_aurocs)])) if np.isfinite(finding_aurocs).any() \
        else math.nan
    predicted = scores >= thresholds
    prf = np.array([precision_recall_f1(truth[:, j], predicted[:, j]) for j in range(len(LABELS))])
    # Spearman Mantel between the test set's true and predicted 6x6 co-occurrence (No Finding included)
    result = mantel(cooccurrence(truth), cooccurrence(predicted), permutations=permutations, seed=seed,
                    method="spearman")
    if math.isnan(result.r):
        notes.append("Mantel r undefined: the true or predicted co-occurrence entries are all equal")
    minutes = None if run.train_seconds is None else run.train_seconds / 60.0
    return RunResult(run.setting, run.split, aurocs, macro, np.asarray(thresholds), source, prf,
                     prf[:len(FINDINGS)].mean(axis=0), result, truth, run.test_probs, predicted,
                     minutes, run.epochs, run.run_args, notes)


# ----------------------------------------------------------------------------------- table helpers
def cell(values, decimals: int) -> str:
    """mean ± sd of the finite values; '*' when some were undefined; 'n/a' when none is defined."""
    values = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "n/a"
    return mean_sd(finite, decimals) + (PARTIAL if finite.size < values.size else "")


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; columns whose cells all read as numbers ("79.4 ± 0.4", "3", "n/a") align right."""
    def numeric(value) -> bool:
        text = str(value).split(" ")[0].rstrip(PARTIAL)
        try:
            float(text)
            return True
        except ValueError:
            return text in ("n/a", "")
    right = [bool(rows) and all(numeric(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, table: str, notes: list[str]) -> None:
    text = f"# {title}\n\n{table}"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def table_notes(rows: list[list]) -> list[str]:
    notes = ["Mean ± sd over splits (sd with ddof = 1; 'n/a' with a single split)."]
    if any(PARTIAL in str(v) for row in rows for v in row):
        notes.append(f"{PARTIAL} averaged over the splits where the metric is defined (a label with a "
                     "single class in some test sets; see summary.md).")
    return notes


# ----------------------------------------------------------------------------------- the tables
def write_table1(rows: list[dict], out: Path) -> list[str]:
    header = list(rows[0].keys()) if rows else ["label", "images"]
    body = [[r[h] for h in header] for r in rows]
    write_csv(out / "table1.csv", header, body)
    write_markdown(out / "table1.md", "Table 1. Images per label in the cohort",
                   markdown_table(header, body), [])
    return ["table1.csv", "table1.md"]


def write_table2(results: dict[str, list[RunResult]], out: Path, decimals: int) -> list[str]:
    header = ["setting", "splits", *FINDINGS, "Macro", NO_FINDING, "Train (min)"]
    rows = []
    for name, runs in results.items():
        row = [name, len(runs)]
        for j in range(len(FINDINGS)):
            row.append(cell([100 * r.aurocs[j] for r in runs], decimals))
        row.append(cell([100 * r.macro_auroc for r in runs], decimals))
        row.append(cell([100 * r.aurocs[len(FINDINGS)] for r in runs], decimals))
        row.append(cell([r.train_minutes for r in runs], decimals))
        rows.append(row)
    write_csv(out / "table2.csv", header, rows)
    write_markdown(out / "table2.md", "Table 2. Test AUROC ×100 per label, macro AUROC, derived No Finding "
                   "AUROC (1 - max p), and training time", markdown_table(header, rows),
                   table_notes(rows))
    return ["table2.csv", "table2.md"]


def write_table3(results: dict[str, list[RunResult]], out: Path, decimals: int) -> list[str]:
    header = ["setting", "splits", "Macro P", "Macro R", "Macro F1",
              f"{NO_FINDING} P", f"{NO_FINDING} R", f"{NO_FINDING} F1"]
    rows = []
    for name, runs in results.items():
        row = [name, len(runs)]
        row += [cell([100 * r.macro_prf[m] for r in runs], decimals) for m in range(3)]
        row += [cell([100 * r.prf[len(FINDINGS), m] for r in runs], decimals) for m in range(3)]
        rows.append(row)
    write_csv(out / "table3.csv", header, rows)
    notes = table_notes(rows) + [
        "Precision, recall and F1 ×100 on test, at per-label thresholds tuned on validation by best F1 "
        "(No Finding on its derived score 1 - max p); macro = mean over the five findings."]
    write_markdown(out / "table3.md", "Table 3. Macro and No Finding precision, recall and F1",
                   markdown_table(header, rows), notes)
    return ["table3.csv", "table3.md"]


def write_by_split(results: dict[str, list[RunResult]], out: Path) -> list[str]:
    """The per-split numbers behind Tables 2 and 3, unrounded, for audits and further analysis."""
    auroc_rows, prf_rows = [], []
    for name, runs in results.items():
        for r in runs:
            for j, label in enumerate(LABELS):
                auroc_rows.append([name, r.split, label, _num(r.aurocs[j])])
                prf_rows.append([name, r.split, label, _num(r.thresholds[j]), r.threshold_source,
                                 *(_num(v) for v in r.prf[j])])
            auroc_rows.append([name, r.split, "macro", _num(r.macro_auroc)])
            prf_rows.append([name, r.split, "macro", "", "", *(_num(v) for v in r.macro_prf)])
    write_csv(out / "auroc_by_split.csv", ["setting", "split", "label", "auroc"], auroc_rows)
    write_csv(out / "prf_by_split.csv", ["setting", "split", "label", "threshold", "threshold_source",
                                         "precision", "recall", "f1"], prf_rows)
    return ["auroc_by_split.csv", "prf_by_split.csv"]


def _num(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else repr(float(value))


def headline_pairs(settings: list[Setting]) -> set[tuple[str, str]]:
    """The study's comparisons: each architecture's original input vs M-15 and vs M-50."""
    names = {s.name for s in settings}
    pairs = set()
    for arch in sorted({s.arch for s in settings}):
        for masked in ("m15", "m50"):
            a, b = f"{arch}_original", f"{arch}_{masked}"
            if a in names and b in names:
                pairs.add((a, b))
    return pairs


def write_ttests(results: dict[str, list[RunResult]], settings: list[Setting], out: Path):
    """Paired t-tests over splits, every pair of settings, macro AUROC and No Finding AUROC."""
    metrics = {"macro_auroc": lambda r: r.macro_auroc,
               "no_finding_auroc": lambda r: r.aurocs[len(FINDINGS)]}
    headline = headline_pairs(settings)
    rows = []
    for metric, value in metrics.items():
        for sa, sb in itertools.combinations(settings, 2):
            a_by_split = {r.split: value(r) for r in results[sa.name] if np.isfinite(value(r))}
            b_by_split = {r.split: value(r) for r in results[sb.name] if np.isfinite(value(r))}
            common = sorted(set(a_by_split) & set(b_by_split))
            a = np.array([a_by_split[k] for k in common])
            b = np.array([b_by_split[k] for k in common])
            is_headline = (sa.name, sb.name) in headline
            means = [_num(a.mean()) if a.size else "", _num(b.mean()) if b.size else ""]
            if len(common) < 2:
                rows.append([metric, sa.name, sb.name, "", "", "", is_headline, len(common), *means,
                             f"skipped: {len(common)} common split(s) with a defined value, need 2"])
                continue
            test = paired_ttest(a, b)
            rows.append([metric, sa.name, sb.name, _num(test.t) or str(test.t), test.df,
                         _num(test.p) or str(test.p), is_headline, len(common), *means, test.note])
    header = ["metric", "a", "b", "t", "df", "p", "headline", "n_splits", "mean_a", "mean_b", "note"]
    write_csv(out / "ttests.csv", header, rows)
    return ["ttests.csv"], rows


def write_mantel(results: dict[str, list[RunResult]], out: Path) -> list[str]:
    rows = [[name, r.split, _num(r.mantel.r), _num(r.mantel.p), r.mantel.permutations, r.mantel.exact]
            for name, runs in results.items() for r in runs]
    write_csv(out / "mantel.csv", ["setting", "split", "r", "p", "permutations", "exact"], rows)
    return ["mantel.csv"]


# ----------------------------------------------------------------------------------- figures
def choose_roc_settings(settings: list[Setting], requested: list[str] | None) -> list[str]:
    """Two settings to compare: as requested; else <arch>_original vs <arch>_m50 (the study's figure)
    for the first architecture that has both; else the first two (or the only one)."""
    names = [s.name for s in settings]
    if requested:
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise ValueError(f"--roc-settings: unknown setting(s) {unknown}; available: {names}")
        return list(requested)
    for arch in dict.fromkeys(s.arch for s in settings):
        if f"{arch}_original" in names and f"{arch}_m50" in names:
            return [f"{arch}_original", f"{arch}_m50"]
    return names[:2]


def write_figures(cohort: Cohort, results: dict[str, list[RunResult]], settings: list[Setting],
                  out: Path, roc_settings: list[str] | None, roc_split: int | None) -> tuple[list[str], str]:
    from cxrstats import plots
    figures = out / "figures"
    written = []
    plots.cooccurrence_figure(figures / "cooccurrence_dataset.png",
                              [(f"cohort: label co-occurrence ({len(cohort.images)} images)",
                                cooccurrence(cohort.labels))], LABELS)
    written.append("figures/cooccurrence_dataset.png")

    chosen = choose_roc_settings(settings, roc_settings)
    splits_of = [{r.split: r for r in results[name]} for name in chosen]
    common = sorted(set.intersection(*(set(s) for s in splits_of)))
    if roc_split is not None and roc_split not in common:
        raise ValueError(f"--roc-split {roc_split}: not a split of every chosen setting {chosen} "
                         f"(common splits: {common})")
    if not common:
        return written, f"ROC figure skipped: settings {chosen} share no split"
    k = common[0] if roc_split is None else roc_split
    picked = [s[k] for s in splits_of]
    plots.roc_figure(figures / "roc_curves.png",
                     [(f"{r.setting.name}, split {k} (test, n = {len(r.test_labels)})",
                       r.test_probs, r.test_labels) for r in picked], FINDINGS, NO_FINDING)
    panels = [(f"test set, split {k}: truth", cooccurrence(picked[0].test_labels))]
    panels += [(f"{r.setting.name}: predicted", cooccurrence(r.predicted)) for r in picked]
    plots.cooccurrence_figure(figures / "cooccurrence_predicted.png", panels, LABELS)
    written += ["figures/roc_curves.png", "figures/cooccurrence_predicted.png"]
    return written, f"ROC and predicted co-occurrence figures: {', '.join(chosen)} on split {k}"


# ----------------------------------------------------------------------------------- summary
DESCRIPTIONS = {
    "table1.csv": "Table 1: images per label in the cohort (copied from cohort/table1.csv)",
    "table1.md": "Table 1 as Markdown",
    "table2.csv": "Table 2: test AUROC ×100 per label, macro, No Finding (mean ± sd over splits), "
                  "training minutes",
    "table2.md": "Table 2 as Markdown",
    "table3.csv": "Table 3: macro and No Finding precision/recall/F1 ×100 at validation-tuned thresholds",
    "table3.md": "Table 3 as Markdown",
    "auroc_by_split.csv": "per-split, unrounded AUROC behind Table 2",
    "prf_by_split.csv": "per-split thresholds and precision/recall/F1 behind Table 3",
    "ttests.csv": "paired t-tests over splits between every pair of settings (headline = the study's "
                  "original vs M-15 / M-50 comparisons)",
    "mantel.csv": "Spearman Mantel test per run: true vs predicted test co-occurrence (6 labels)",
    "figures/cooccurrence_dataset.png": "label co-occurrence counts in the whole cohort",
    "figures/roc_curves.png": "test ROC curves per label, derived No Finding dashed, two settings",
    "figures/cooccurrence_predicted.png": "test-set true vs predicted label co-occurrence",
    "figures/seg_loss_curves.png": "segmentation fine-tuning loss curves (cxrseg.figures)",
    "figures/mask_panels.png": "example lung masks: raw, eroded, M-15, M-50 (cxrseg.figures)",
    "run.json": "the report's arguments, git commit and package versions",
    "summary.md": "this summary",
}


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


def seg_summary(work: Path) -> list[str]:
    curves_path = work / "seg" / "curves.csv"
    if not curves_path.is_file():
        return ["No segmentation run found (no seg/curves.csv)."]
    rows = read_csv(curves_path, required=["epoch", "part", "loss"])
    lines = [f"`{curves_path}`: {len({r['epoch'] for r in rows})} epoch(s) of fine-tuning."]
    for part in ("train", "val"):
        losses = [(float(r["loss"]), r["epoch"]) for r in rows if r["part"] == part and r["loss"]]
        if losses:
            best = min(losses)
            lines.append(f"{part} loss: last {losses[-1][0]:.4f}, lowest {best[0]:.4f} (epoch {best[1]}).")
    return lines


def write_summary(out: Path, work: Path, args, cohort: Cohort, splits: dict[int, dict[str, str]],
                  settings: list[Setting], results: dict[str, list[RunResult]], ttest_rows: list[list],
                  notes: list[str]) -> None:
    L = [f"# Report summary", "",
         f"Made by `python -m cxrstats.report` from `{work}` at {time.strftime('%Y-%m-%d %H:%M:%S')} "
         f"(code {git_commit()}). Report arguments: "
         + ", ".join(f"`{k}={v}`" for k, v in vars(args).items()) + ".", "",
         "## Data", "",
         f"- Cohort `{cohort.path}`: {len(cohort.images)} images; per label: "
         + ", ".join(f"{label} {int(n)}" for label, n in zip(LABELS, cohort.labels.sum(axis=0))) + "."]
    cohort_run = cohort.path.parent / "run.json"
    if cohort_run.is_file():
        try:
            cohort_args = json.loads(cohort_run.read_text()).get("arguments", {})
            L.append("- Cohort made with: " + ", ".join(f"`{k}={v}`" for k, v in cohort_args.items()) + ".")
        except (ValueError, AttributeError):
            L.append(f"- `{cohort_run}` is unreadable.")
    for k in sorted(splits):
        parts = list(splits[k].values())
        L.append(f"- Split {k}: " + ", ".join(f"{p} {parts.count(p)}" for p in ("train", "val", "test")) + ".")
    L += ["", "## Settings", "",
          markdown_table(["setting", "arch", "train input", "test input", "splits", "thresholds",
                          "epochs (mean)", "train min (mean)"],
                         [[s.name, s.arch, s.train_input, s.test_input,
                           " ".join(str(r.split) for r in results[s.name]),
                           "; ".join(sorted({r.threshold_source for r in results[s.name]})),
                           _mean_text([r.epochs for r in results[s.name]], 1),
                           _mean_text([r.train_minutes for r in results[s.name]], 2)]
                          for s in settings]).rstrip(), ""]
    L += ["Training arguments (from each run's run.json):", ""]
    L += [f"- {s.name}: {describe_args(results[s.name])}" for s in settings]
    L += ["", "## Results", "", (out / "table2.md").read_text().replace("# ", "### ", 1),
          (out / "table3.md").read_text().replace("# ", "### ", 1), "### Headline paired t-tests", ""]
    headline_rows = [r for r in ttest_rows if r[6]]
    if headline_rows:
        L.append(markdown_table(["metric", "a", "b", "t", "df", "p", "note"],
                                [[r[0], r[1], r[2], _short(r[3]), r[4], _short(r[5]), r[10]]
                                 for r in headline_rows]))
    else:
        L.append("None: the settings do not include an architecture's original and M-15/M-50 inputs.\n")
    L += ["### Mantel tests", "",
          "Spearman correlation between the test set's true and predicted 6x6 label co-occurrence "
          "(No Finding included), upper triangle; p from all 720 relabellings (exact) when 6! <= "
          f"{args.permutations} permutations, else from {args.permutations} random ones.", ""]
    L.append(markdown_table(["setting", "r (mean ± sd)", "p per split", "mode"],
                            [[name, cell([r.mantel.r for r in runs], 3),
                              " ".join(f"{r.mantel.p:.3g}" for r in runs),
                              "exact" if all(r.mantel.exact for r in runs) else "permutations"]
                             for name, runs in results.items()]))
    L += ["## Segmentation", ""] + [f"- {line}" for line in seg_summary(work)] + [""]
    splits_with_note: dict[tuple[str, str], list[str]] = {}  # one line per (setting, note)
    for runs in results.values():
        for r in runs:
            for n in r.notes:
                splits_with_note.setdefault((r.setting.name, n), []).append(str(r.split))
    run_notes = [f"{name} split(s) {', '.join(ks)}: {n}" for (name, n), ks in splits_with_note.items()]
    if notes or run_notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes + run_notes] + [""]
    files = sorted({str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                    and not p.name.endswith(".tmp")} | {"summary.md"})
    L += ["## Files", "", f"All under `{out}`:", ""]
    L += [f"- `{f}`: {DESCRIPTIONS.get(f, 'other output found in this folder')}" for f in files]
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text("\n".join(L) + "\n")


def _mean_text(values, decimals: int) -> str:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return f"{np.mean(finite):.{decimals}f}" if finite else "n/a"


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


# ----------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrstats.report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m cxrstats.report --work work/demo --out work/demo/results "
               "--roc-settings resnet50_original resnet50_m50")
    parser.add_argument("--work", required=True, help="work folder holding cohort/, runs/ (and seg/)")
    parser.add_argument("--out", help="output folder (default: WORK/results)")
    parser.add_argument("--settings", nargs="+", help="settings (runs/ folder names) to report; default all")
    parser.add_argument("--roc-settings", nargs="+", metavar="SETTING",
                        help="one or two settings for the ROC and predicted co-occurrence figures "
                             "(default: <arch>_original and <arch>_m50, else the first two)")
    parser.add_argument("--roc-split", type=int, help="split shown in those figures (default: first common)")
    parser.add_argument("--permutations", type=int, default=9999,
                        help="Mantel permutations; all n! are enumerated when n! <= this (6 labels: 720)")
    parser.add_argument("--decimals", type=int, default=1, help="decimals in the tables")
    parser.add_argument("--skip-incomplete", action="store_true",
                        help="skip split folders with missing files instead of stopping (listed in summary.md)")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Mantel random permutations")
    return parser


def make_report(args) -> Path:
    start = time.time()
    work = Path(args.work)
    out = Path(args.out) if args.out else work / "results"
    args.out = str(out)  # recorded resolved in run.json and summary.md
    if args.roc_settings and len(args.roc_settings) > 2:
        raise ValueError("--roc-settings takes one or two settings")
    cohort = read_cohort(work / "cohort" / "cohort.csv")
    splits_path = work / "cohort" / "splits.csv"
    splits = read_splits(splits_path, cohort)
    table1 = read_csv(work / "cohort" / "table1.csv", required=["label", "images"])

    found = find_runs(work / "runs")
    names = args.settings or sorted(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"{work / 'runs'}: no split folders for setting(s) {unknown}; found {sorted(found)}")
    settings = sorted((parse_setting(n) for n in names), key=lambda s: s.sort_key)

    notes, results = [], {}
    for setting in settings:
        runs = []
        for k, folder in sorted(found[setting.name].items()):
            try:
                run = read_run(folder, setting, k, cohort, splits, splits_path)
            except FileNotFoundError as error:
                if not args.skip_incomplete:
                    raise
                notes.append(f"skipped incomplete run {folder}: {error}")
                continue
            runs.append(evaluate_run(run, args.permutations, args.seed))
            print(f"report: {setting.name} split {k}: macro AUROC {runs[-1].macro_auroc:.4f}", flush=True)
        if runs:
            results[setting.name] = runs
        else:
            notes.append(f"setting {setting.name}: no complete run, left out")
    settings = [s for s in settings if s.name in results]
    if not settings:
        raise ValueError(f"{work / 'runs'}: no complete run to report")
    if max(len(r) for r in results.values()) < 2:
        notes.append("fewer than 2 splits per setting: sd shown as n/a and t-tests skipped")
    if len(settings) < 2:
        notes.append("a single setting: no pair to compare, ttests.csv has no rows")

    write_table1(table1, out)
    write_table2(results, out, args.decimals)
    write_table3(results, out, args.decimals)
    write_by_split(results, out)
    _, ttest_rows = write_ttests(results, settings, out)
    write_mantel(results, out)
    if not args.no_figures:
        _, figure_note = write_figures(cohort, results, settings, out, args.roc_settings, args.roc_split)
        notes.append(figure_note)
    write_run_json(out, args, seconds=time.time() - start)
    write_summary(out, work, args, cohort, splits, settings, results, ttest_rows, notes)
    print(f"report: wrote {out} in {time.time() - start:.1f} s", flush=True)
    return out


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        make_report(args)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
