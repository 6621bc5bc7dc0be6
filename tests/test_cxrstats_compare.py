"""Kendall's tau, the Welch interval, the two-folder comparison and the tightness curve, on small
hand-made auroc_by_split.csv files whose answers are known."""
import csv
import itertools
import json
import math
import shutil

import numpy as np
import pytest
import scipy.stats

from cxrstats import by_split, compare, tables, tightness
from cxrstats.by_split import read_auroc_by_split
from cxrstats.foundation.fileio import mark_folder, write_done
from cxrstats.kendall import kendall_tau
from cxrstats.results import REPORT_DONE, run_entry
from cxrstats.study import FINDINGS, LABELS

# ----------------------------------------------------------------------------- Kendall's tau


def scipy_tau(x, y):
    return scipy.stats.kendalltau(x, y).statistic   # tau-b by default


def test_kendall_tau_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for n in range(2, 40):
        for levels in (3, 1000):                      # many ties / almost none
            x, y = rng.integers(0, levels, n), rng.integers(0, levels, n)
            ours, theirs = kendall_tau(x, y), scipy_tau(x, y)
            if math.isnan(theirs):
                assert math.isnan(ours)
            else:
                assert ours == pytest.approx(theirs, abs=1e-12), (n, levels)


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one swapped neighbour pair of 4: C = 5, D = 1 -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties in y: pairs (1,2) tied; C = 5, D = 0, n0 = 6, n2 = 1 -> 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))        # constant: undefined
    assert math.isnan(kendall_tau([1], [2]))
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        kendall_tau([1, np.nan], [1, 2])


# ----------------------------------------------------------------------------- Welch


def test_welch_interval_matches_scipy():
    rng = np.random.default_rng(1)
    for na, nb in itertools.product((2, 3, 5), (2, 4, 7)):
        a, b = rng.normal(0.8, 0.03, na), rng.normal(0.75, 0.08, nb)
        ours = compare.welch_interval(a, b)
        result = scipy.stats.ttest_ind(b, a, equal_var=False)
        ci = result.confidence_interval(0.95)
        assert ours.diff == pytest.approx(b.mean() - a.mean())
        assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert ours.df == pytest.approx(result.df, rel=1e-10)


def test_welch_interval_edge_cases():
    point = compare.welch_interval([0.7, 0.7], [0.8, 0.8])
    assert (point.low, point.diff, point.high) == pytest.approx((0.1, 0.1, 0.1))
    assert math.isnan(point.df)
    with pytest.raises(ValueError, match="at least 2"):
        compare.welch_interval([0.7], [0.8, 0.9])


# ----------------------------------------------------------------------------- the files

def write_aurocs(path, table):
    """table: {setting: {label: [auroc per split]}}; labels missing from it get 0.5."""
    mark_folder(path.parent)  # as the report's folder is
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "split", "label", "auroc"])
        for setting, by_label in table.items():
            n = len(next(iter(by_label.values())))
            for k in range(n):
                for label in LABELS + ("macro",):
                    value = by_label.get(label, [0.5] * n)[k]
                    writer.writerow([setting, k, label, "" if value is None else repr(value)])
    return path


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def finished_report(work, table, split_by="image", mask_extent=None, precision="fp32"):
    """WORK as cxrstats.report leaves it, in outline: a finished cohort split by `split_by`, masks
    of `mask_extent` (none when None), a finished run folder per setting and split of `table`
    recording the inputs it read, results/auroc_by_split.csv and the report's completion record
    naming those runs and the cohort, with the masks' extent and the runs' precision."""
    write_done(work / "cohort", {"split_by": split_by}, [], split_by=split_by)
    inputs = {}
    if mask_extent is not None:
        record = write_done(work / "masks", {"extent": mask_extent}, [],
                            done="done_postprocess.json", extent=mask_extent)
        inputs["masks/done_postprocess.json"] = json.loads(record.read_text())["arguments_hash"]
    runs = []
    for setting, by_label in table.items():
        for k in range(len(next(iter(by_label.values())))):
            folder = work / "runs" / setting / f"split{k}"
            write_done(folder, {"out": str(folder)}, [], inputs=inputs, precision=precision)
            runs.append(run_entry(work, folder))
    write_aurocs(work / "results" / "auroc_by_split.csv", table)
    write_done(work / "results", {}, ["auroc_by_split.csv"], done=REPORT_DONE, runs=runs,
               cohort=run_entry(work, work / "cohort"), split_by=split_by,
               mask_extent=mask_extent, precision=precision)
    return work


def retrain(work, setting, k):
    """The run's done.json made again (as a new training run writes it)."""
    folder = work / "runs" / setting / f"split{k}"
    write_done(folder, {"out": str(folder), "epochs": 99}, [])


def test_read_auroc_by_split_refuses_malformed_rows(tmp_path):
    good = write_aurocs(tmp_path / "a.csv", {"resnet50_original": {"macro": [0.8, None]}})
    table = read_auroc_by_split(good)
    assert table["resnet50_original"]["macro"][0] == 0.8
    assert math.isnan(table["resnet50_original"]["macro"][1])
    for line, message in [("resnet50_m15,0,Cardiomegaly,0.7", "label"),
                          ("resnet50_m15,x,macro,0.7", "split must be an integer"),
                          ("resnet50_m15,0,macro,1.7", "outside"),
                          ("resnet50_original,0,macro,0.7", "second row")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(good.read_text() + line + "\n")
        with pytest.raises(ValueError, match=message):
            read_auroc_by_split(bad)


A = {"resnet50_original": {"macro": [0.80, 0.82], "No Finding": [0.90, 0.92]},
     "resnet50_m15": {"macro": [0.76, 0.78], "No Finding": [0.86, 0.90]},
     "resnet50_m50": {"macro": [0.70, 0.74], "No Finding": [0.80, 0.84]}}
# B: every macro AUROC lower; m15 now beats original (its headline flips), m50 stays last.
B = {"resnet50_original": {"macro": [0.70, 0.74, 0.72], "No Finding": [0.80, 0.84, 0.82]},
     "resnet50_m15": {"macro": [0.75, 0.77, 0.76], "No Finding": [0.75, 0.79, 0.77]},
     "resnet50_m50": {"macro": [0.60, 0.66, 0.63], "No Finding": [0.70, 0.74, 0.72]}}


def test_compare_cli_numbers(tmp_path):
    finished_report(tmp_path / "a", A, "image")
    finished_report(tmp_path / "b", B, "patient")
    out = tmp_path / "cmp"
    compare.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--out", str(out)])

    rows = read(out / "compare.csv")
    assert list(rows[0]) == compare.SETTING_HEADER
    assert [(r["setting"], r["metric"]) for r in rows] == [
        (s, m) for s in ("resnet50_original", "resnet50_m15", "resnet50_m50")
        for m in ("macro", "No Finding")]
    first = rows[0]
    assert float(first["a_mean"]) == pytest.approx(0.81)
    assert float(first["b_mean"]) == pytest.approx(0.72)
    assert float(first["a_sd"]) == pytest.approx(np.std([0.80, 0.82], ddof=1))
    assert (first["a_splits"], first["b_splits"]) == ("2", "3")
    assert float(first["diff_b_minus_a"]) == pytest.approx(-0.09)
    ci = scipy.stats.ttest_ind([0.70, 0.74, 0.72], [0.80, 0.82],
                               equal_var=False).confidence_interval()
    assert (float(first["ci_low"]), float(first["ci_high"])) == pytest.approx((ci.low, ci.high))

    order = {r["metric"]: r for r in read(out / "compare_order.csv")}
    assert order["macro"]["order_a"] == "resnet50_original > resnet50_m15 > resnet50_m50"
    assert order["macro"]["order_b"] == "resnet50_m15 > resnet50_original > resnet50_m50"
    assert float(order["macro"]["kendall_tau"]) == pytest.approx(1 / 3)     # (2 - 1) / 3 pairs
    assert float(order["No Finding"]["kendall_tau"]) == pytest.approx(1.0)

    headline = {(r["metric"], r["masked"]): r for r in read(out / "compare_headline.csv")}
    m15 = headline[("macro", "resnet50_m15")]
    assert float(m15["a_diff"]) == pytest.approx(-0.04)
    assert float(m15["b_diff"]) == pytest.approx(0.04)
    assert m15["same_direction"] == "no"
    assert headline[("macro", "resnet50_m50")]["same_direction"] == "yes"
    # paired over splits within a folder: A's m15 - original is -0.04 on both splits (no spread up
    # to rounding), so p is 0 or within rounding of it
    assert float(m15["a_p"]) < 1e-9
    expected_p = scipy.stats.ttest_rel([0.60, 0.66, 0.63], [0.70, 0.74, 0.72]).pvalue
    assert float(headline[("macro", "resnet50_m50")]["b_p"]) == pytest.approx(expected_p)

    text = (out / "compare.md").read_text()
    assert "resnet50_m15 vs resnet50_original" in text and "| no |" in text
    assert "A (image-level splits)" in text and "B (patient-level splits)" in text
    record = json.loads((out / "done_compare.json").read_text())
    assert record["split_by"] == {"--a": "image", "--b": "patient"}
    assert json.loads((out / "run_compare.json").read_text())["settings_in_one_folder_only"] == []


def compare_error(a, b, out):
    with pytest.raises(SystemExit) as error:
        compare.main(["--a", str(a), "--b", str(b), "--out", str(out)])
    message = str(error.value)
    assert message.startswith("error: ") and not out.exists()
    return message


def test_compare_refuses_a_folder_without_a_finished_report(tmp_path):
    a = finished_report(tmp_path / "a", A, "image")
    b = tmp_path / "b"
    message = compare_error(a, b, tmp_path / "o")
    assert f"{b}: no finished report" in message and "make reproduce" in message
    finished_report(b, B, "patient")
    (b / "results" / REPORT_DONE).unlink()           # the report was stopped or is running
    message = compare_error(a, b, tmp_path / "o")
    assert f"{b}: no finished report" in message and "make reproduce" in message


@pytest.mark.parametrize("how", ["gone", "retrained"])
def test_compare_refuses_a_report_whose_run_changed_since(tmp_path, how):
    a = finished_report(tmp_path / "a", A, "image")
    b = finished_report(tmp_path / "b", B, "patient")
    run = b / "runs" / "resnet50_m15" / "split2"
    if how == "gone":                                # training started again, or was killed
        (run / "done.json").unlink()
    else:
        retrain(b, "resnet50_m15", 2)
    message = compare_error(a, b, tmp_path / "o")
    assert str(run) in message and "make reproduce" in message
    assert ("is gone" if how == "gone" else "changed since") in message


@pytest.mark.parametrize("fact", ["mask_extent", "precision"])
def test_compare_refuses_reports_of_other_masks_or_precisions(tmp_path, fact):
    a = finished_report(tmp_path / "a", A, "image", mask_extent="full")
    other = {"mask_extent": "field"} if fact == "mask_extent" else {"precision": "bf16"}
    b = finished_report(tmp_path / "b", B, "patient", **{"mask_extent": "full", **other})
    message = compare_error(a, b, tmp_path / "o")
    assert f"--a {a} and --b {b} differ in their" in message
    assert f"{fact} {'full' if fact == 'mask_extent' else 'fp32'} in {a / 'results'}" in message
    finished_report(b, B, "patient", mask_extent="full")
    compare.main(["--a", str(a), "--b", str(b), "--out", str(tmp_path / "o")])


def test_compare_refuses_one_folder_given_twice(tmp_path):
    a = finished_report(tmp_path / "a", A, "image")
    message = compare_error(a, tmp_path / "x" / ".." / "a", tmp_path / "o")
    assert "same folder" in message and f"--a {a}" in message and "--b " in message
    copy = shutil.copytree(a, tmp_path / "copy")     # same report under another name
    message = compare_error(a, copy, tmp_path / "o")
    assert "same report" in message and str(a) in message and str(copy) in message
    write_aurocs(copy / "results" / "auroc_by_split.csv", B)  # other numbers, the same runs
    write_done(copy / "results", {}, ["auroc_by_split.csv"], done=REPORT_DONE,
               runs=[run_entry(copy, p) for p in sorted((copy / "runs").glob("*/split*"))],
               cohort=run_entry(copy, copy / "cohort"))
    message = compare_error(a, copy, tmp_path / "o")
    assert "same trained run" in message and "runs/resnet50_" in message


def test_compare_refuses_folders_not_split_as_it_claims(tmp_path):
    a = finished_report(tmp_path / "a", A, "image")
    b = finished_report(tmp_path / "b", B, "image")
    message = compare_error(a, b, tmp_path / "o")
    assert f"--b {b}: its cohort is split by image" in message and "SPLIT_BY=patient" in message
    message = compare_error(b, a, tmp_path / "o")
    assert f"--b {a}: its cohort is split by image" in message
    finished_report(b, B, "patient")
    finished_report(a, A, "patient")
    message = compare_error(a, b, tmp_path / "o")
    assert f"--a {a}: its cohort is split by patient" in message and "SPLIT_BY=image" in message
    old = finished_report(tmp_path / "old", A, "image")
    write_done(old / "cohort", {}, [])               # a cohort record without split_by
    write_done(old / "results", {}, ["auroc_by_split.csv"], done=REPORT_DONE,
               runs=[run_entry(old, p) for p in sorted((old / "runs").glob("*/split*"))],
               cohort=run_entry(old, old / "cohort"), precision="fp32")
    message = compare_error(old, b, tmp_path / "o")
    assert "does not say how the images were split" in message


def test_compare_refuses_an_output_folder_of_the_users_files(tmp_path):
    a = finished_report(tmp_path / "a", A, "image")
    b = finished_report(tmp_path / "b", B, "patient")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "compare.csv").write_bytes(b"my notes")
    with pytest.raises(SystemExit, match="compare.csv.*nothing was changed"):
        compare.main(["--a", str(a), "--b", str(b), "--out", str(out)])
    assert [p.name for p in out.iterdir()] == ["compare.csv"]
    assert (out / "compare.csv").read_bytes() == b"my notes"


# ----------------------------------------------------------------------------- tightness

def test_tightness_rows_and_figure(tmp_path):
    table = {"resnet50_original": {"macro": [0.80, 0.84], "Pneumonia": [0.9, 0.8]},
             "resnet50_m50": {"macro": [0.78, 0.80]},
             "resnet50_m0": {"macro": [0.70, 0.72], "Pneumonia": [0.6, None]},
             "resnet50_m15": {"macro": [0.75, 0.77]},
             "densenet121_m100": {"macro": [0.6, 0.7]},
             "resnet50_overlay": {"macro": [0.5, 0.5]},
             "resnet50_m15_on_original": {"macro": [0.5, 0.5]}}
    work = finished_report(tmp_path / "work", table)
    tightness.main(["--work", str(work)])
    out = work / "results"
    rows = read(out / "tightness.csv")
    assert list(rows[0]) == tightness.HEADER
    keys = list(dict.fromkeys((r["arch"], r["radius"]) for r in rows))
    assert keys == [("resnet50", "original"), ("resnet50", "0"), ("resnet50", "15"),
                    ("resnet50", "50"), ("densenet121", "100")]
    labels = [r["label"] for r in rows if (r["arch"], r["radius"]) == ("resnet50", "0")]
    assert labels == [*FINDINGS, "macro", "No Finding"]
    by = {(r["arch"], r["radius"], r["label"]): r for r in rows}
    assert float(by[("resnet50", "0", "macro")]["mean"]) == pytest.approx(0.71)
    assert float(by[("resnet50", "0", "macro")]["sd"]) == pytest.approx(np.std([0.7, 0.72], ddof=1))
    one = by[("resnet50", "0", "Pneumonia")]          # undefined on split 1
    assert (one["mean"], one["sd"], one["n_splits"]) == ("0.6", "", "1")
    assert float(by[("resnet50", "original", "Pneumonia")]["mean"]) == pytest.approx(0.85)
    assert (out / "figures" / "tightness.png").stat().st_size > 10_000
    record = json.loads((out / "run_tightness.json").read_text())
    assert record["settings_left_out"] == ["resnet50_m15_on_original", "resnet50_overlay"]
    done = json.loads((out / "done_tightness.json").read_text())
    assert done["runs"] == json.loads((out / "done_report.json").read_text())["runs"]
    assert done["mask_extent"] is record["mask_extent"] is None     # no masks/ record here


def test_tightness_states_the_extent_of_the_masks_the_runs_trained_on(tmp_path):
    work = finished_report(tmp_path / "work", {"resnet50_original": {"macro": [0.8, 0.8]},
                                               "resnet50_m15": {"macro": [0.7, 0.7]}},
                           mask_extent="full")
    tightness.main(["--work", str(work)])
    for name in ("run_tightness.json", "done_tightness.json"):
        assert json.loads((work / "results" / name).read_text())["mask_extent"] == "full"
    write_done(work / "masks", {"extent": "field"}, [], done="done_postprocess.json",
               extent="field")                       # masks made again, of another extent
    run = work / "runs" / "resnet50_m15" / "split0"
    with pytest.raises(SystemExit, match=f"{run}: trained on another masks/done_postprocess.json"):
        tightness.main(["--work", str(work)])


def test_tightness_without_radius_settings_is_refused(tmp_path):
    work = finished_report(tmp_path / "work", {"resnet50_original": {"macro": [0.8, 0.8]}})
    with pytest.raises(SystemExit, match="no <arch>_m<r> settings"):
        tightness.main(["--work", str(work)])


TIGHT = {"resnet50_original": {"macro": [0.80, 0.84]}, "resnet50_m15": {"macro": [0.75, 0.77]}}


def test_tightness_refuses_results_without_a_finished_report(tmp_path):
    work = tmp_path / "work"
    write_aurocs(work / "results" / "auroc_by_split.csv", TIGHT)  # e.g. make killed mid-report
    with pytest.raises(SystemExit, match=f"{work}: no finished report.*make reproduce"):
        tightness.main(["--work", str(work)])
    assert not (work / "results" / "tightness.csv").exists()


def test_tightness_refuses_a_report_whose_run_was_trained_again(tmp_path):
    work = finished_report(tmp_path / "work", TIGHT)
    tightness.main(["--work", str(work)])
    retrain(work, "resnet50_m15", 1)
    run = work / "runs" / "resnet50_m15" / "split1"
    with pytest.raises(SystemExit, match=f"{run}: its done.json changed.*make reproduce"):
        tightness.main(["--work", str(work)])
    (work / "cohort" / "done.json").unlink()
    with pytest.raises(SystemExit, match="cohort: its done.json is gone"):
        tightness.main(["--work", str(work)])


def test_tightness_refuses_an_output_folder_of_the_users_files(tmp_path):
    work = finished_report(tmp_path / "work", TIGHT)
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "tightness.png").write_bytes(b"my figure")
    with pytest.raises(SystemExit, match="error: .*tightness.png"):
        tightness.main(["--work", str(work), "--out", str(out)])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["figures",
                                                                        "figures/tightness.png"]
    assert (out / "figures" / "tightness.png").read_bytes() == b"my figure"


def test_the_report_and_compare_pair_splits_by_one_rule():
    """Which splits pair up in a paired t-test (both values defined, matched by split) is
    cxrstats.by_split.paired_by_split, used by the report's ttests.csv and by compare."""
    assert tables.paired_by_split is compare.paired_by_split is by_split.paired_by_split
    splits, x, y = by_split.paired_by_split({0: 0.7, 1: float("nan"), 2: 0.8, 3: 0.9},
                                            {0: 0.6, 1: 0.5, 2: 0.75, 4: 0.1})
    assert splits == [0, 2] and x.tolist() == [0.7, 0.8] and y.tolist() == [0.6, 0.75]
