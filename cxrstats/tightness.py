"""Mask tightness as a dial: test AUROC against the dilation radius of the lung mask.

Reads WORK/results/auroc_by_split.csv of a finished report whose runs are unchanged since
(cxrstats.results.read_report: else refused, naming the run) and keeps the settings `<arch>_m<r>`
(inputs cut out with the lung mask dilated by r pixels; m0 = the eroded mask itself) and
`<arch>_original` (the reference). Other settings (overlay, train/test pairs) are left out and
listed in run_tightness.json.

Writes into --out (default WORK/results):
- tightness.csv: arch, radius (an integer, or "original" for the reference rows), label (the five
  findings, macro, No Finding), mean, sd (ddof 1; empty with one split), n_splits (splits where the
  AUROC is defined).
- figures/tightness.png: one panel per backbone, AUROC (mean ± sd over splits) against the radius
  for each label, the original images' AUROC as a dotted line of the same colour.
- run_tightness.json, then done_tightness.json last (with the sha256 of the report's record, the
  runs it read and `mask_extent`, the lung extent of the m<r> masks the runs trained on, as the
  report's record states it; read_report refuses runs whose masks were made again since).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from cxrstats.foundation.argtypes import Parser
from cxrstats.by_split import MACRO, values
from cxrstats.formatting import mean_and_sd
from cxrstats.foundation.fileio import (USER_ERRORS, atomic_path, file_sha256, write_csv,
                                        write_done, write_run_json)
from cxrstats.results import REPORT_DONE, aurocs_path, begin_results, read_report_aurocs
from cxrstats.foundation.input_names import mask_radius
from cxrstats.runs import ARCH_ORDER, parse_setting
from cxrstats.study import FINDINGS, NO_FINDING

DONE = "done_tightness.json"
OUTPUTS = ("tightness.csv", "figures/tightness.png", "run_tightness.json")
HEADER = ["arch", "radius", "label", "mean", "sd", "n_splits"]
CURVE_LABELS = FINDINGS + (MACRO, NO_FINDING)
ORIGINAL = "original"
COLORS = {"Mass": "tab:blue", "Nodule": "tab:orange", "Pneumonia": "tab:green", "Edema": "tab:red",
          "Fibrosis": "tab:purple", MACRO: "black", NO_FINDING: "tab:gray"}


def radius_of(setting: str) -> tuple[str, int | str] | None:
    """(arch, radius) for `<arch>_m<r>`, (arch, "original") for `<arch>_original`, else None."""
    s = parse_setting(setting)
    if s.train_input != s.test_input:
        return None
    if s.train_input == ORIGINAL:
        return s.arch, ORIGINAL
    radius = mask_radius(s.train_input)
    return None if radius is None else (s.arch, radius)


def curves(table) -> tuple[dict[str, dict], list[str]]:
    """{arch: {radius or "original": {label: finite AUROCs over splits}}}, settings left out."""
    found: dict[str, dict] = {}
    skipped = []
    for setting in table:
        key = radius_of(setting)
        if key is None:
            skipped.append(setting)
            continue
        arch, radius = key
        found.setdefault(arch, {})[radius] = {label: values(table, setting, label)
                                              for label in CURVE_LABELS}
    return found, sorted(skipped)


def _arch_order(arch: str):
    return (ARCH_ORDER.index(arch), "") if arch in ARCH_ORDER else (len(ARCH_ORDER), arch)


def _radius_order(radius) -> tuple[int, int]:
    return (0, 0) if radius == ORIGINAL else (1, radius)


def _num(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))


def tightness_rows(found: dict[str, dict]) -> list[list]:
    rows = []
    for arch in sorted(found, key=_arch_order):
        for radius in sorted(found[arch], key=_radius_order):
            for label in CURVE_LABELS:
                v = found[arch][radius][label]
                mean, sd = mean_and_sd(v)
                rows.append([arch, radius, label, _num(mean), _num(sd), len(v)])
    return rows


def figure(path: Path, found: dict[str, dict]) -> None:
    """One panel per backbone with at least one m<r> setting."""
    from matplotlib.figure import Figure

    archs = [a for a in sorted(found, key=_arch_order) if any(r != ORIGINAL for r in found[a])]
    fig = Figure(figsize=(5.2 * len(archs) + 1.6, 4.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(archs), squeeze=False, sharey=True)[0]
    for ax, arch in zip(axes, archs):
        radii = sorted((r for r in found[arch] if r != ORIGINAL))
        # Labels are drawn side by side around each radius so that their error bars stay apart.
        dodge = 0.012 * max(max(radii) - min(radii), 1)
        for i, label in enumerate(CURVE_LABELS):
            color = COLORS[label]
            width = 2.2 if label in (MACRO, NO_FINDING) else 1.2
            points = [(r, found[arch][r][label]) for r in radii if found[arch][r][label]]
            if points:
                x = [r + (i - (len(CURVE_LABELS) - 1) / 2) * dodge for r, _ in points]
                spread = [mean_and_sd(v) for _, v in points]
                mean = [m for m, _ in spread]
                sd = [0.0 if math.isnan(s) else s for _, s in spread]  # one split: no bar
                ax.errorbar(x, mean, yerr=sd, color=color, linewidth=width, marker="o",
                            markersize=3.5, capsize=3, label=label)
            reference = found[arch].get(ORIGINAL, {}).get(label)
            if reference:
                ax.axhline(np.mean(reference), color=color, linewidth=1.0, linestyle=":")
        ax.set_xticks(radii)
        ax.set_xlabel("mask dilation radius r (pixels of the cached image); input m<r>")
        ax.set_title(f"{arch} (dotted: original images)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test AUROC (mean ± sd over splits)")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrstats.tightness", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrstats.tightness --work work/demo --out work/demo/results")
    parser.add_argument("--work", required=True,
                        help="work folder (reads results/auroc_by_split.csv)")
    parser.add_argument("--out", default=None, help="output folder (default WORK/results)")
    return parser


def run(args) -> Path:
    start = time.time()
    path = aurocs_path(args.work)
    table, report = read_report_aurocs(args.work)
    report_sha256 = file_sha256(path.parent / REPORT_DONE)
    found, skipped = curves(table)
    if not any(r != ORIGINAL for arch in found.values() for r in arch):
        raise ValueError(f"{path}: no <arch>_m<r> settings (train inputs m<r>, e.g. "
                         f"INPUTS=\"original m0 m15 m30 m50\"); found {sorted(found)} and "
                         f"{skipped}")
    out = Path(args.out) if args.out else Path(args.work) / "results"
    begin_results(out, OUTPUTS, DONE, figures=True)
    write_csv(out / "tightness.csv", HEADER, tightness_rows(found))
    figure(out / "figures" / "tightness.png", found)
    extent = report.get("mask_extent")
    write_run_json(out, args, time.time() - start, name="run_tightness.json", input=str(path),
                   settings_left_out=skipped, mask_extent=extent)
    write_done(out, args, OUTPUTS, done=DONE, report_done_sha256=report_sha256,
               runs=report["runs"], mask_extent=extent)
    print(f"tightness: {sum(len(r) for r in found.values())} settings -> {out / 'tightness.csv'}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
