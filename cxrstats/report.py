"""The study's report: Tables 1-3, paired t-tests, DeLong tests, Mantel tests and figures, from the
files under WORK.

Reads only files (docs/DESIGN.md): cohort/{cohort,splits,table1}.csv of a finished cohort
(cohort/done.json); every FINISHED
runs/<setting>/split<k>/ folder (done.json, {val,test}_probs.npy with {val,test}_ids.csv,
thresholds.csv, timing.json, history.csv, run.json); seg/run_finetune.json and seg/curves.csv, and
results/attribution.csv, when present. Thresholds come from each run's thresholds.csv (tuned on
validation by the trainer); a run without one is tuned here, on its validation predictions, by best
F1. Test predictions are used only to score. A run folder without done.json (killed, still running,
or restarted over an old run) stops the report, unless --skip-incomplete leaves it out, loudly.

Writes into --out (default WORK/results): table1/2/3 (.csv and .md), auroc_by_split.csv (with
bootstrap 95% intervals and the findings each macro averages), prf_by_split.csv, ttests.csv (with
Holm-adjusted and DeLong p), delong.csv, mantel.csv, figures/*.png, run.json and summary.md, then
last done_report.json: the files it vouches for, and each run it read (folder under WORK, sha256 of
its done.json) and the cohort, so readers of these files (cxrstats.compare, cxrstats.tightness) can
refuse them once a run was trained again (cxrstats.results), the masks' lung extent and the runs'
resolved precision. A folder holding files this toolkit did not write is refused before anything
is written.

Refused, naming the run: a run trained on another cohort, cache or masks than WORK holds now
(cxrstats.results.changed_inputs), a run whose recorded arch and inputs are not the setting its
folder names, and runs of different resolved precisions (fp32, bf16) in one report.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cxrstats import tables
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, IncompleteRunError, content_facts,
                                        file_sha256, read_csv, read_done, write_done,
                                        write_run_json)
from cxrstats.report_figures import FIGURES, write_figures
from cxrstats.results import COHORT_DONE, REPORT_DONE, begin_results, masks_extent, run_entry
from cxrstats.runs import (Setting, find_runs, one_precision, parse_setting, read_cohort, read_run,
                           read_splits)
from cxrstats.scoring import evaluate_run
from cxrstats.summary import (SummaryInputs, check_attribution, random_segmenter_warning,
                              write_summary)

OUTPUTS = (*tables.OUTPUTS, *FIGURES, "run.json", "summary.md")  # every file the report may write


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrstats.report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m cxrstats.report --work work/demo --out work/demo/results "
               "--roc-settings resnet50_original resnet50_m50")
    parser.add_argument("--work", required=True,
                        help="work folder holding cohort/, runs/ (and seg/)")
    parser.add_argument("--out", help="output folder (default: WORK/results)")
    parser.add_argument("--settings", nargs="+",
                        help="settings (runs/ folder names) to report; default all")
    parser.add_argument("--roc-settings", nargs="+", metavar="SETTING",
                        help="one or two settings for the ROC and predicted co-occurrence figures "
                             "(default: <arch>_original and <arch>_m50, else the first two)")
    parser.add_argument("--roc-split", type=int_range(0),
                        help="split shown in those figures (default: first common)")
    parser.add_argument("--permutations", type=int_range(1), default=9999,
                        help="Mantel permutations; all n! are enumerated when n! <= this "
                             "(6 labels: 720)")
    parser.add_argument("--bootstrap", type=int_range(0, 100_000), default=1000, metavar="N",
                        help="stratified bootstrap resamples per run for the AUROCs' 95%% "
                             "intervals in auroc_by_split.csv (0: no intervals)")
    parser.add_argument("--decimals", type=int_range(0, 10), default=1,
                        help="decimals in the tables")
    parser.add_argument("--skip-incomplete", action="store_true",
                        help="leave out run folders without done.json or with missing files, "
                             "instead of stopping (listed at the top of summary.md and on stderr)")
    parser.add_argument("--no-figures", action="store_true", help="write tables only")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed of the Mantel permutations and the bootstrap")
    return parser


def select_settings(work: Path, found: dict[str, dict[int, Path]], requested: list[str] | None
                    ) -> list[Setting]:
    """The settings to report, in the study's order (architecture, then input by mask radius)."""
    names = requested or sorted(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"{work / 'runs'}: no split folders for setting(s) {unknown}; "
                         f"found {sorted(found)}")
    return sorted((parse_setting(n) for n in names), key=lambda s: s.sort_key)


def read_finished_runs(settings, found, cohort, splits, splits_path, skip_incomplete: bool):
    """Read every run folder of `settings`: ({setting: [FinishedRun]}, ["folder: reason" of
    unfinished ones]). Unfinished = no done.json or a missing file; unless skip_incomplete, any
    stops the report with the whole list (so one re-run fixes them all)."""
    runs, incomplete = {}, []
    for setting in settings:
        runs[setting.name] = []
        for k, folder in sorted(found[setting.name].items()):
            try:
                runs[setting.name].append(read_run(folder, setting, k, cohort, splits, splits_path))
            except (IncompleteRunError, FileNotFoundError) as error:
                incomplete.append(str(error))
    if incomplete and not skip_incomplete:
        raise ValueError(f"{len(incomplete)} run folder(s) are not finished runs; re-run them, "
                         "or pass --skip-incomplete to report without them:\n  "
                         + "\n  ".join(incomplete))
    return runs, incomplete


def read_finished_cohort(work: Path) -> tuple[dict, str]:
    """cohort/'s completion record and its sha256; IncompleteRunError when the cohort did not
    finish (its files may be half of a new cohort and half of an old one)."""
    folder = work / "cohort"
    record = read_done(folder, COHORT_DONE, what="cohort (python -m cxrcls.cohort)")
    return record, file_sha256(folder / COHORT_DONE)


def make_report(args) -> Path:
    start = time.time()
    work = Path(args.work)
    out = Path(args.out) if args.out else work / "results"
    args.out = str(out)  # recorded resolved in run.json and summary.md
    if args.roc_settings and len(args.roc_settings) > 2:
        raise ValueError("--roc-settings takes one or two settings")
    cohort_record, cohort_sha256 = read_finished_cohort(work)
    cohort = read_cohort(work / "cohort" / "cohort.csv")
    splits_path = work / "cohort" / "splits.csv"
    splits = read_splits(splits_path, cohort)
    table1 = read_csv(work / "cohort" / "table1.csv", required=["label", "images"])
    found = find_runs(work / "runs")
    settings = select_settings(work, found, args.settings)

    warnings, notes = [], []
    segmenter = random_segmenter_warning(work)
    if segmenter:
        warnings.append(segmenter)
    runs, incomplete = read_finished_runs(settings, found, cohort, splits, splits_path,
                                          args.skip_incomplete)
    if incomplete:
        warnings.append(f"{len(incomplete)} unfinished run folder(s) LEFT OUT (--skip-incomplete): "
                        + "; ".join(incomplete))
    precision = one_precision([run for setting in settings for run in runs[setting.name]])
    for warning in warnings:
        print(f"report: WARNING: {warning}", file=sys.stderr, flush=True)

    results = {}
    for setting in settings:
        scored = [evaluate_run(run, args.permutations, args.seed, args.bootstrap)
                  for run in runs[setting.name]]
        for r in scored:
            print(f"report: {setting.name} split {r.split}: macro AUROC {r.macro_auroc:.4f}",
                  flush=True)
        if scored:
            results[setting.name] = scored
        else:
            notes.append(f"setting {setting.name}: no finished run, left out")
    settings = [s for s in settings if s.name in results]
    if not settings:
        raise ValueError(f"{work / 'runs'}: no finished run to report")
    if max(len(r) for r in results.values()) < 2:
        notes.append("fewer than 2 splits per setting: sd shown as n/a and t-tests skipped")
    if len(settings) < 2:
        notes.append("a single setting: no pair to compare, ttests.csv has no rows")
    run_entries = [{"setting": run.setting.name, "split": run.split,
                    **run_entry(work, run.folder, sha256=run.done_sha256)}
                   for setting in settings for run in runs[setting.name]]

    begin_results(out, OUTPUTS, REPORT_DONE, figures=not args.no_figures)
    written = tables.write_table1(table1, out)
    written += tables.write_table2(results, out, args.decimals)
    written += tables.write_table3(results, out, args.decimals)
    written += tables.write_by_split(results, out)
    delong_rows = tables.delong_tests(results, settings)
    written += tables.write_delong(delong_rows, out)
    ttest_rows = tables.ttests(results, settings, delong_rows)
    written += tables.write_ttests(ttest_rows, out)
    written += tables.write_mantel(results, out)
    if not args.no_figures:
        figures, figure_note = write_figures(cohort, results, settings, out, args.roc_settings,
                                             args.roc_split)
        written += figures
        notes.append(figure_note)
    write_run_json(out, args, seconds=time.time() - start)
    attribution = check_attribution([out, work / "results"], run_entries)
    write_summary(SummaryInputs(work, out, args, cohort, splits, settings, results, ttest_rows,
                                run_entries, attribution, warnings, notes))
    write_done(out, args, [*written, "run.json", "summary.md"], done=REPORT_DONE,
               runs=run_entries,
               cohort=run_entry(work, work / "cohort", COHORT_DONE, sha256=cohort_sha256),
               split_by=cohort_record.get("split_by"), left_out=incomplete,
               mask_extent=masks_extent(work), precision=precision,
               attribution=attribution.fact() if attribution else None,
               **content_facts(out, [name for name in written if name.endswith(".csv")]))
    print(f"report: wrote {out} in {time.time() - start:.1f} s", flush=True)
    return out


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        make_report(args)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
