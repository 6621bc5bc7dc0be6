"""The report's tables: Tables 1-3 (.csv and .md), the per-split numbers behind them, the paired
t-tests with Holm's adjustment, DeLong's tests of the headline pairs and the Mantel tests.

Each writer takes the scored runs ({setting name: [RunResult per split]}) and the output folder,
writes its files atomically and returns their names (relative to the folder).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from cxrstats.by_split import paired_by_split
from cxrstats.foundation.fileio import atomic_path, write_csv
from cxrstats.formatting import FEWER, PARTIAL, cell, markdown_table, num
from cxrstats.hypothesis import holm, paired_ttest
from cxrstats.runs import Setting
from cxrstats.scoring import RunResult, delong_pair
from cxrstats.study import FINDINGS, LABELS, NO_FINDING

Results = dict[str, list[RunResult]]
# Every file the writers below write, as they return them (relative to the output folder).
OUTPUTS = ("table1.csv", "table1.md", "table2.csv", "table2.md", "table3.csv", "table3.md",
           "auroc_by_split.csv", "prf_by_split.csv", "delong.csv", "ttests.csv", "mantel.csv")
TTEST_COLUMNS = ["metric", "a", "b", "t", "df", "p", "headline", "n_splits", "mean_a", "mean_b",
                 "note", "p_holm", "delong_p"]
# macro_n_findings: on the macro rows, how many findings that split's macro averages (empty on
# the label rows).
AUROC_BY_SPLIT_COLUMNS = ["setting", "split", "label", "auroc", "ci_low", "ci_high",
                          "macro_n_findings"]
DELONG_COLUMNS = ["a", "b", "split", "label", "labels_used", "n", "auc_a", "auc_b", "var_a",
                  "var_b", "cov", "z", "p", "note"]


def write_markdown(path: Path, title: str, table: str, notes: list[str]) -> None:
    text = f"# {title}\n\n{table}"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


MACRO_RULE = ("Macro = the mean over the five findings (No Finding is not in it) that have both "
              "classes in the split's test set.")


def table_notes(rows: list[list]) -> list[str]:
    notes = ["Mean ± sd over splits (sd with ddof = 1; 'n/a' with a single split).", MACRO_RULE]
    if any(PARTIAL in str(v) for row in rows for v in row):
        notes.append(f"{PARTIAL} averaged over the splits where the metric is defined (a label "
                     "with a single class in some test sets; see summary.md).")
    if any(FEWER in str(v) for row in rows for v in row):
        notes.append(f"{FEWER} on some split the macro leaves out a finding with a single class in "
                     "that test set, so it averages fewer than five (see summary.md).")
    return notes


def macro_cell(runs: list[RunResult], value, decimals: int) -> str:
    """`cell` of a macro metric over the runs, marked FEWER when some split's macro left out a
    finding but is defined (a macro undefined on a split is PARTIAL, as any metric)."""
    mark = FEWER if any(0 < r.macro_n_findings < len(FINDINGS) for r in runs) else ""
    return cell([value(r) for r in runs], decimals) + mark


def write_table1(rows: list[dict], out: Path) -> list[str]:
    header = list(rows[0].keys()) if rows else ["label", "images"]
    body = [[r[h] for h in header] for r in rows]
    write_csv(out / "table1.csv", header, body)
    write_markdown(out / "table1.md", "Table 1. Images per label in the cohort",
                   markdown_table(header, body), [])
    return ["table1.csv", "table1.md"]


def write_table2(results: Results, out: Path, decimals: int) -> list[str]:
    header = ["setting", "splits", *FINDINGS, "Macro", NO_FINDING, "Train (min)"]
    rows = []
    for name, runs in results.items():
        row = [name, len(runs)]
        for j in range(len(FINDINGS)):
            row.append(cell([100 * r.aurocs[j] for r in runs], decimals))
        row.append(macro_cell(runs, lambda r: 100 * r.macro_auroc, decimals))
        row.append(cell([100 * r.aurocs[len(FINDINGS)] for r in runs], decimals))
        row.append(cell([r.train_minutes for r in runs], decimals))
        rows.append(row)
    write_csv(out / "table2.csv", header, rows)
    write_markdown(out / "table2.md", "Table 2. Test AUROC ×100 per label, macro AUROC, derived No "
                   "Finding AUROC (1 - max p), and training time", markdown_table(header, rows),
                   table_notes(rows))
    return ["table2.csv", "table2.md"]


def write_table3(results: Results, out: Path, decimals: int) -> list[str]:
    header = ["setting", "splits", "Macro P", "Macro R", "Macro F1",
              f"{NO_FINDING} P", f"{NO_FINDING} R", f"{NO_FINDING} F1"]
    rows = []
    for name, runs in results.items():
        row = [name, len(runs)]
        row += [macro_cell(runs, lambda r: 100 * r.macro_prf[m], decimals) for m in range(3)]
        row += [cell([100 * r.prf[len(FINDINGS), m] for r in runs], decimals) for m in range(3)]
        rows.append(row)
    write_csv(out / "table3.csv", header, rows)
    notes = table_notes(rows) + [
        "Precision, recall and F1 ×100 on test, at per-label thresholds tuned on validation by "
        "best F1 (No Finding on its derived score 1 - max p); the macro averages the same "
        "findings as the macro AUROC."]
    write_markdown(out / "table3.md", "Table 3. Macro and No Finding precision, recall and F1",
                   markdown_table(header, rows), notes)
    return ["table3.csv", "table3.md"]


def write_by_split(results: Results, out: Path) -> list[str]:
    """The per-split numbers behind Tables 2 and 3, unrounded, with the AUROCs' bootstrap 95%
    intervals (empty when --bootstrap 0 or the AUROC is undefined) and, for the macro, how many
    findings it averages."""
    auroc_rows, prf_rows = [], []
    for name, runs in results.items():
        for r in runs:
            for j, label in enumerate(LABELS):
                auroc_rows.append([name, r.split, label, num(r.aurocs[j]),
                                   *(num(v) for v in r.intervals[j]), ""])
                prf_rows.append([name, r.split, label, num(r.thresholds[j]), r.threshold_source,
                                 *(num(v) for v in r.prf[j])])
            auroc_rows.append([name, r.split, "macro", num(r.macro_auroc),
                               *(num(v) for v in r.macro_interval), r.macro_n_findings])
            prf_rows.append([name, r.split, "macro", "", "", *(num(v) for v in r.macro_prf)])
    write_csv(out / "auroc_by_split.csv",
              AUROC_BY_SPLIT_COLUMNS, auroc_rows)
    write_csv(out / "prf_by_split.csv",
              ["setting", "split", "label", "threshold", "threshold_source", "precision", "recall",
               "f1"], prf_rows)
    return ["auroc_by_split.csv", "prf_by_split.csv"]


def headline_pairs(settings: list[Setting]) -> list[tuple[str, str]]:
    """The study's comparisons: each architecture's original input vs M-15 and vs M-50."""
    names = {s.name for s in settings}
    pairs = []
    for arch in dict.fromkeys(s.arch for s in settings):
        for masked in ("m15", "m50"):
            a, b = f"{arch}_original", f"{arch}_{masked}"
            if a in names and b in names:
                pairs.append((a, b))
    return pairs


def delong_tests(results: Results, settings: list[Setting]) -> list[dict]:
    """DeLong's test for every headline pair on every split both settings have: one row per label
    and one for the macro AUROC (columns DELONG_COLUMNS)."""
    rows = []
    for a, b in headline_pairs(settings):
        runs_b = {r.split: r for r in results[b]}
        for ra in results[a]:
            if ra.split not in runs_b:
                continue
            for pair in delong_pair(ra, runs_b[ra.split]):
                t = pair.test
                values = [""] * 7 if t is None else [
                    num(v) for v in (t.auc_a, t.auc_b, t.var_a, t.var_b, t.cov, t.z, t.p)]
                if t is not None and values[5] == "":  # z = ±inf or nan: keep its text
                    values[5], values[6] = str(t.z), str(t.p)
                note = "; ".join(n for n in (pair.note, "" if t is None else t.note) if n)
                rows.append(dict(zip(DELONG_COLUMNS, [a, b, ra.split, pair.label, pair.labels_used,
                                                      len(ra.test_ids), *values, note])))
    return rows


def write_delong(rows: list[dict], out: Path) -> list[str]:
    write_csv(out / "delong.csv", DELONG_COLUMNS, [[r[c] for c in DELONG_COLUMNS] for r in rows])
    return ["delong.csv"]


def _paired(results: Results, sa: Setting, sb: Setting, value) -> tuple[np.ndarray, np.ndarray]:
    """The two settings' values on the splits where both are defined, matched by split."""
    _, a, b = paired_by_split({r.split: value(r) for r in results[sa.name]},
                              {r.split: value(r) for r in results[sb.name]})
    return a, b


def ttests(results: Results, settings: list[Setting], delong_rows: list[dict]) -> list[dict]:
    """Paired t-tests over splits, every pair of settings, macro AUROC and No Finding AUROC (columns
    TTEST_COLUMNS). p_holm: Holm's adjustment within each metric's family of tests; delong_p: for
    the headline pairs, DeLong's p of that metric on each split, as "split:p" separated by
    spaces."""
    metrics = {"macro_auroc": (lambda r: r.macro_auroc, "macro"),
               "no_finding_auroc": (lambda r: r.aurocs[len(FINDINGS)], NO_FINDING)}
    headline = set(headline_pairs(settings))
    rows = []
    for metric, (value, delong_label) in metrics.items():
        family = []
        for sa, sb in itertools.combinations(settings, 2):
            a, b = _paired(results, sa, sb, value)
            is_headline = (sa.name, sb.name) in headline
            delong_p = " ".join(f"{r['split']}:{_p_text(r['p'])}" for r in delong_rows
                                if (r["a"], r["b"], r["label"]) == (sa.name, sb.name, delong_label))
            row = dict(metric=metric, a=sa.name, b=sb.name, t="", df="", p="",
                       headline=is_headline, n_splits=a.size,
                       mean_a=num(a.mean()) if a.size else "",
                       mean_b=num(b.mean()) if b.size else "", note="", p_holm="",
                       delong_p=delong_p)
            if a.size < 2:
                row["note"] = f"skipped: {a.size} common split(s) with a defined value, need 2"
            else:
                test = paired_ttest(a, b)
                row.update(t=num(test.t) or str(test.t), df=test.df, p=num(test.p) or str(test.p),
                           note=test.note)
                family.append((row, test.p))
            rows.append(row)
        adjusted = holm([p for _, p in family]) if family else []
        for (row, _), p_holm in zip(family, adjusted):
            row["p_holm"] = num(p_holm)
    return rows


def _p_text(p: str) -> str:
    try:
        return f"{float(p):.3g}"
    except ValueError:
        return "n/a"


def write_ttests(rows: list[dict], out: Path) -> list[str]:
    write_csv(out / "ttests.csv", TTEST_COLUMNS, [[r[c] for c in TTEST_COLUMNS] for r in rows])
    return ["ttests.csv"]


def write_mantel(results: Results, out: Path) -> list[str]:
    rows = [[name, r.split, num(r.mantel.r), num(r.mantel.p), r.mantel.permutations, r.mantel.exact]
            for name, runs in results.items() for r in runs]
    write_csv(out / "mantel.csv", ["setting", "split", "r", "p", "permutations", "exact"], rows)
    return ["mantel.csv"]
