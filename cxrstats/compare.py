"""Compare the study under two work folders, A with image-level and B with patient-level splits: do
its numbers and its conclusions survive?

Reads WORK_A/results/auroc_by_split.csv and WORK_B/results/auroc_by_split.csv, each of a finished
report whose runs and cohort are unchanged since (cxrstats.results.read_report), and each cohort's
completion record (cohort/done.json: `split_by` must be `image` for A and `patient` for B). Refused:
one folder given twice, two folders holding the same report or the same trained runs (a
difference with an interval would then be shown as if A and B were independent), and two reports
of different masks' extents or run precisions (their records' `mask_extent`, `precision`).
Writes into --out:
- compare.csv: per setting and metric (macro AUROC, No Finding AUROC): mean, sd (ddof 1) and number
  of splits under A and under B, the difference B - A of the means and its 95% Welch interval.
- compare_order.csv: per metric, the settings ordered by mean AUROC under A and under B, and
  Kendall's tau-b between the two (cxrstats.kendall; 1 = same order, -1 = reversed).
- compare_headline.csv: the study's comparisons (each backbone's original vs M-15 and vs M-50) under
  A and under B: mean paired difference masked - original over the splits, paired t-test p, and
  whether the direction is the same under both.
- compare.md (the three tables, AUROC x100), run_compare.json, then done_compare.json last (with
  the sha256 of each report's record).

Why Welch: split k of A and split k of B are different random partitions (different test images),
so the splits are not paired across folders; the two sets of split AUROCs are independent samples
whose spread may differ (patient-level splits can vary more), so the unequal-variance (Welch) t
interval is used rather than a pooled or a paired one. Within one folder split k is the same test
set for every setting, so the headline comparisons there use the paired t-test, as the report does.
With 2 splits per folder the Welch interval has about 1-2 degrees of freedom and is very wide: it
says how little the data can tell, not that there is no difference.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats

from cxrstats.foundation.argtypes import Parser
from cxrstats.by_split import MACRO, AurocsBySplit, paired_by_split, values
from cxrstats.foundation.fileio import (USER_ERRORS, atomic_path, begin_run, file_sha256,
                                        read_done, write_csv, write_done, write_run_json)
from cxrstats.formatting import mean_and_sd
from cxrstats.hypothesis import paired_ttest
from cxrstats.kendall import kendall_tau
from cxrstats.results import COHORT_DONE, REPORT_DONE, aurocs_path, read_report_aurocs
from cxrstats.runs import parse_setting
from cxrstats.study import NO_FINDING

METRICS = ((MACRO, "macro AUROC"), (NO_FINDING, "No Finding AUROC"))
SPLIT_BY = {"--a": "image", "--b": "patient"}  # what the comparison claims of each folder
DONE = "done_compare.json"
OUTPUTS = ("compare.csv", "compare_order.csv", "compare_headline.csv", "compare.md",
           "run_compare.json")
SETTING_HEADER = ["setting", "metric", "a_mean", "a_sd", "a_splits", "b_mean", "b_sd", "b_splits",
                  "diff_b_minus_a", "ci_low", "ci_high", "welch_df"]
ORDER_HEADER = ["metric", "settings", "kendall_tau", "order_a", "order_b"]
HEADLINE_HEADER = ["metric", "arch", "original", "masked", "a_diff", "a_p", "a_splits", "b_diff",
                   "b_p", "b_splits", "same_direction"]


@dataclass(frozen=True)
class WelchInterval:
    """mean(b) - mean(a) with its two-sided Welch t interval; df the Welch-Satterthwaite degrees."""
    diff: float
    low: float
    high: float
    df: float


def welch_interval(a, b, level: float = 0.95) -> WelchInterval:
    """Interval for mean(b) - mean(a) from two independent samples with unequal variances.

    se^2 = s_a^2 / n_a + s_b^2 / n_b (sample variances, ddof 1),
    df = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1)),
    diff +- t_{(1 + level) / 2, df} * se. Each sample needs 2 values (else ValueError); when both
    have zero spread the interval is the single point diff (df NaN).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"welch_interval needs at least 2 values per sample, got {a.size} and "
                         f"{b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("welch_interval: values must be finite")
    if not 0 < level < 1:
        raise ValueError(f"welch_interval: level must be in (0, 1), got {level}")
    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return WelchInterval(diff, diff, diff, math.nan)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(scipy.stats.t.ppf((1 + level) / 2, df)) * se
    return WelchInterval(diff, diff - half, diff + half, float(df))


def _num(value: float) -> str:
    return "" if value is None or not np.isfinite(value) else repr(float(value))


def ordered_settings(a: AurocsBySplit, b: AurocsBySplit) -> list[str]:
    """Every setting of either table, in the study's order (backbone, then input)."""
    return sorted(set(a) | set(b), key=lambda name: parse_setting(name).sort_key)


def setting_rows(a: AurocsBySplit, b: AurocsBySplit) -> list[list]:
    rows = []
    for setting in ordered_settings(a, b):
        for label, _ in METRICS:
            va, vb = values(a, setting, label), values(b, setting, label)
            (ma, sa), (mb, sb) = mean_and_sd(va), mean_and_sd(vb)
            if len(va) > 1 and len(vb) > 1:
                w = welch_interval(va, vb)
            else:
                w = WelchInterval(mb - ma, math.nan, math.nan, math.nan)
            rows.append([setting, label, _num(ma), _num(sa), len(va), _num(mb), _num(sb), len(vb),
                         _num(w.diff), _num(w.low), _num(w.high), _num(w.df)])
    return rows


def order_rows(a: AurocsBySplit, b: AurocsBySplit) -> list[list]:
    """Per metric: settings defined under both, ranked by mean AUROC under each; Kendall's tau."""
    rows = []
    for label, _ in METRICS:
        common = [s for s in ordered_settings(a, b) if values(a, s, label) and values(b, s, label)]
        mean_a = [float(np.mean(values(a, s, label))) for s in common]
        mean_b = [float(np.mean(values(b, s, label))) for s in common]
        tau = kendall_tau(mean_a, mean_b) if len(common) > 1 else math.nan

        def order(means):
            ranked = sorted(zip(means, common), key=lambda pair: -pair[0])
            return " > ".join(name for _, name in ranked)
        rows.append([label, len(common), _num(tau), order(mean_a), order(mean_b)])
    return rows


def paired_difference(table: AurocsBySplit, original: str, masked: str, label: str
                      ) -> tuple[float, float, int]:
    """Mean over splits of masked - original (splits where both are defined), paired t-test p."""
    splits, x, y = paired_by_split(table.get(original, {}).get(label, {}),
                                   table.get(masked, {}).get(label, {}))
    if not splits:
        return math.nan, math.nan, 0
    p = paired_ttest(y, x).p if len(splits) > 1 else math.nan
    return float(np.mean(y - x)), p, len(splits)


def headline_rows(a: AurocsBySplit, b: AurocsBySplit) -> list[list]:
    """Each backbone's original vs m15 and vs m50, where all four settings exist in both tables."""
    rows = []
    archs = list(dict.fromkeys(parse_setting(s).arch for s in ordered_settings(a, b)))
    for label, _ in METRICS:
        for arch in archs:
            for masked in ("m15", "m50"):
                original, other = f"{arch}_original", f"{arch}_{masked}"
                if not all(s in t for s in (original, other) for t in (a, b)):
                    continue
                da, pa, na = paired_difference(a, original, other, label)
                db, pb, nb = paired_difference(b, original, other, label)
                same = ("n/a" if not (np.isfinite(da) and np.isfinite(db)) or da == 0 or db == 0
                        else "yes" if np.sign(da) == np.sign(db) else "no")
                rows.append([label, arch, original, other, _num(da), _num(pa), na, _num(db),
                             _num(pb), nb, same])
    return rows


# ----------------------------------------------------------------------------- markdown

def _x100(text: str, decimals: int = 1, signed: bool = False) -> str:
    if text == "":
        return "n/a"
    return f"{100 * float(text):{'+' if signed else ''}.{decimals}f}"


def _p(text: str) -> str:
    return "n/a" if text == "" else f"{float(text):.3g}"


def markdown(a_path: Path, b_path: Path, settings: list[list], order: list[list],
             headline: list[list]) -> str:
    lines = ["# Comparison of two work folders", "",
             f"- A ({SPLIT_BY['--a']}-level splits): `{a_path}`",
             f"- B ({SPLIT_BY['--b']}-level splits): `{b_path}`", "",
             "AUROC ×100, mean ± sd over each folder's splits (n = number of splits where the "
             "metric is defined). B − A with a 95% Welch t interval: the splits of A and B are "
             "independent partitions, not pairs, and their spreads may differ. With few splits "
             "the interval is wide (its degrees of freedom are shown).", ""]
    for label, title in METRICS:
        lines += [f"## {title}", "",
                  "| setting | A | n | B | n | B − A [95% CI] | df |",
                  "|:---|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in settings if r[1] == label):
            a = f"{_x100(r[2])} ± {_x100(r[3])}" if r[2] else "n/a"
            b = f"{_x100(r[5])} ± {_x100(r[6])}" if r[5] else "n/a"
            ci = f" [{_x100(r[9], signed=True)}, {_x100(r[10], signed=True)}]" if r[9] else ""
            df = "n/a" if r[11] == "" else f"{float(r[11]):.1f}"
            lines.append(f"| {r[0]} | {a} | {r[4]} | {b} | {r[7]} | {_x100(r[8], signed=True)}{ci} "
                         f"| {df} |")
        lines.append("")
    lines += ["## Order of the settings", "",
              "Settings ranked by mean AUROC under each folder; Kendall's tau-b between the two "
              "rankings (1: same order, -1: reversed).", "",
              "| metric | settings | tau | order under A | order under B |",
              "|:---|---:|---:|:---|:---|"]
    for r in order:
        tau = "n/a" if r[2] == "" else f"{float(r[2]):.2f}"
        lines.append(f"| {r[0]} | {r[1]} | {tau} | {r[3]} | {r[4]} |")
    lines += ["", "## The study's comparisons under both", "",
              "Masked − original, mean over the splits of each folder (×100), paired t-test over "
              "splits within the folder.", "",
              "| metric | comparison | A: diff | A: p | B: diff | B: p | same direction |",
              "|:---|:---|---:|---:|---:|---:|:---|"]
    for r in headline:
        lines.append(f"| {r[0]} | {r[3]} vs {r[2]} | {_x100(r[4], signed=True)} | {_p(r[5])} | "
                     f"{_x100(r[7], signed=True)} | {_p(r[8])} | {r[10]} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the command

def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrstats.compare", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrstats.compare --a work/demo --b work/demo-patient "
               "--out work/compare")
    parser.add_argument("--a", required=True,
                        help="work folder of the image-level splits (SPLIT_BY=image; reads "
                             "results/auroc_by_split.csv)")
    parser.add_argument("--b", required=True,
                        help="work folder of the patient-level splits (SPLIT_BY=patient)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0,
                        help="recorded for uniform command lines; nothing here is random")
    return parser


def refuse_same_folder(a: Path, b: Path) -> None:
    """A and B must be two folders: one folder compared with itself is no comparison."""
    if a.resolve() == b.resolve():
        raise ValueError(f"--a {a} and --b {b} are the same folder; compare the image-level "
                         "work folder with the patient-level one")


def refuse_same_report(a: Path, b: Path, a_record: dict, b_record: dict) -> None:
    """Two folders holding one report (a copy) or sharing trained runs are not independent: the
    Welch interval would claim a precision that is not there."""
    if file_sha256(aurocs_path(a)) == file_sha256(aurocs_path(b)):
        raise ValueError(f"--a {a} and --b {b} hold the same report (identical "
                         "results/auroc_by_split.csv): one study, not two; compare the "
                         "image-level work folder with the patient-level one")
    a_runs = {r["done_sha256"]: r["folder"] for r in a_record["runs"]}
    shared = [f"{a_runs[r['done_sha256']]} = {r['folder']}" for r in b_record["runs"]
              if r["done_sha256"] in a_runs]
    if shared:
        raise ValueError(f"--a {a} and --b {b} report the same trained run(s) ({shared[0]}"
                         f"{', ...' if len(shared) > 1 else ''}): copies, not independent "
                         "studies")


def refuse_mixed_reports(a: Path, b: Path, a_record: dict, b_record: dict) -> None:
    """A and B must be reports of masks of one lung extent and of runs of one resolved precision
    (their records' `mask_extent`, `precision`): else a difference B - A would mix the splitting
    with the masks or the arithmetic."""
    for fact, what in (("mask_extent", "lung masks' extent"), ("precision", "runs' precision")):
        in_a, in_b = a_record.get(fact), b_record.get(fact)
        if in_a != in_b:
            raise ValueError(f"--a {a} and --b {b} differ in their {what} ({fact} {in_a} in "
                             f"{aurocs_path(a).parent / REPORT_DONE}, {in_b} in "
                             f"{aurocs_path(b).parent / REPORT_DONE}); compare work folders made "
                             "with the same masks and precision")


def check_split_by(flag: str, work: Path) -> str:
    """The folder's cohort must be split as the comparison says (SPLIT_BY[flag])."""
    expected = SPLIT_BY[flag]
    path = work / "cohort" / COHORT_DONE
    split_by = read_done(path.parent, COHORT_DONE, what="cohort").get("split_by")
    if split_by is None:
        raise ValueError(f"{flag} {work}: {path} does not say how the images were split "
                         "(no split_by); re-run `make reproduce` for it")
    if split_by != expected:
        raise ValueError(f"{flag} {work}: its cohort is split by {split_by} ({path}), but the "
                         f"comparison reads A as the image-level and B as the patient-level "
                         f"split; give {flag} a work folder made with SPLIT_BY={expected}")
    return split_by


def run(args) -> Path:
    start = time.time()
    a_work, b_work = Path(args.a), Path(args.b)
    refuse_same_folder(a_work, b_work)
    a, a_record = read_report_aurocs(a_work)
    b, b_record = read_report_aurocs(b_work)
    refuse_same_report(a_work, b_work, a_record, b_record)
    refuse_mixed_reports(a_work, b_work, a_record, b_record)
    split_by = {flag: check_split_by(flag, work) for flag, work in (("--a", a_work),
                                                                     ("--b", b_work))}
    a_path, b_path = aurocs_path(a_work), aurocs_path(b_work)
    out = Path(args.out)
    begin_run(out, OUTPUTS, done=DONE)
    settings, order, headline = setting_rows(a, b), order_rows(a, b), headline_rows(a, b)
    write_csv(out / "compare.csv", SETTING_HEADER, settings)
    write_csv(out / "compare_order.csv", ORDER_HEADER, order)
    write_csv(out / "compare_headline.csv", HEADLINE_HEADER, headline)
    with atomic_path(out / "compare.md") as tmp:
        tmp.write_text(markdown(a_path, b_path, settings, order, headline))
    only = sorted(set(a) ^ set(b))
    write_run_json(out, args, time.time() - start, name="run_compare.json",
                   inputs=[str(a_path), str(b_path)], settings_in_one_folder_only=only)
    write_done(out, args, OUTPUTS, done=DONE, split_by=split_by,
               a_report_done_sha256=file_sha256(a_path.parent / REPORT_DONE),
               b_report_done_sha256=file_sha256(b_path.parent / REPORT_DONE))
    for r in order:
        print(f"compare: {r[0]}: Kendall tau {r[2] or 'n/a'} over {r[1]} settings")
    print(f"compare: -> {out / 'compare.md'}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
