"""cxrstats.report on a tiny synthetic WORK folder: numbers checked against direct computation,
files, and clear errors for missing or misaligned inputs."""
import csv
import hashlib
import json
import re
import shutil

import numpy as np
import pytest

from cxrstats import (auroc, best_f1_threshold, bootstrap_aurocs, cooccurrence, delong_macro,
                      delong_test, holm, mantel, mean_sd, no_finding_score, paired_ttest,
                      precision_recall_f1)
from cxrstats import tables
from cxrstats.formatting import FEWER
from cxrstats.foundation.fileio import (FOLDER_MARKER, IncompleteRunError, content_facts,
                                        input_identity, write_done)
from cxrstats.report import main
from cxrstats.results import changed_inputs, input_record_path, read_report, run_entry
from cxrstats.runs import parse_setting
from cxrstats.study import LABELS

RUN_OUTPUTS = ["val_probs.npy", "val_ids.csv", "test_probs.npy", "test_ids.csv"]

FINDINGS = LABELS[:5]


def write_rows(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def build_work(root, settings=("resnet50_original", "resnet50_m50"), n_splits=3, n_images=200,
               seed=0):
    """A WORK folder: cohort (labels, splits, table1) and seeded random runs whose probabilities
    carry signal. The first setting ships thresholds.csv + timing.json, the others history.csv
    only."""
    rng = np.random.default_rng(seed)
    images = [f"img{i:04d}.png" for i in range(n_images)]
    findings = (rng.random((n_images, 5)) < 0.3).astype(int)
    labels = np.column_stack([findings, (findings.sum(axis=1) == 0).astype(int)])
    write_rows(root / "cohort" / "cohort.csv", ["image", *LABELS, "patient_id"],
               [[im, *row, f"p{i // 2}"] for i, (im, row) in enumerate(zip(images, labels))])
    write_rows(root / "cohort" / "table1.csv", ["label", "images"],
               [[name, int(n)] for name, n in zip(LABELS, labels.sum(axis=0))]
               + [["Total unique", n_images]])
    split_rows, parts = [], {}
    for k in range(n_splits):
        order = rng.permutation(n_images)
        n_train, n_val = int(0.7 * n_images), int(0.15 * n_images)
        parts[k] = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
                    "test": order[n_train + n_val:]}
        for part, rows in parts[k].items():
            split_rows += [[images[i], k, part] for i in rows]
    write_rows(root / "cohort" / "splits.csv", ["image", "split", "part"], split_rows)
    write_cohort_record(root, seed)
    for s, setting in enumerate(settings):
        for k in range(n_splits):
            folder = root / "runs" / setting / f"split{k}"
            folder.mkdir(parents=True)
            for part in ("val", "test"):
                rows = parts[k][part]
                logits = (1.0 + s) * findings[rows] + rng.normal(0, 1.0, (len(rows), 5))
                probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
                np.save(folder / f"{part}_probs.npy", probs)
                write_rows(folder / f"{part}_ids.csv", ["image"], [[images[i]] for i in rows])
            if s == 0:
                write_rows(folder / "thresholds.csv", ["label", "threshold", "val_f1"],
                           [[label, 0.5, ""] for label in LABELS])
                (folder / "timing.json").write_text(json.dumps(
                    {"train_seconds": 60.0 * (k + 1), "epochs": 3, "best_epoch": 2,
                     "device": "cpu"}))
            else:
                write_rows(folder / "history.csv",
                           ["epoch", "train_loss", "val_loss", "val_macro_auroc", "seconds"],
                           [[e, 1, 1, 0.5, 30.0] for e in range(4)])
            write_run_record(root, folder, parse_setting(setting), k)
    return root, images, labels


def write_cohort_record(root, seed=0):
    """cohort/done.json as cxrcls.cohort writes it: arguments, split_by and the content identity
    of cohort.csv, splits.csv and table1.csv (cxrcls.cohort.CONTENT_FILES)."""
    names = ("cohort.csv", "splits.csv", "table1.csv")
    write_done(root / "cohort", {"seed": seed}, list(names), split_by="image",
               **content_facts(root / "cohort", names))


def write_run_record(work, folder, setting, k, precision="fp32", **facts):
    """run.json and done.json as cxrcls.train writes them: the run's arguments (arch, inputs,
    split), the identity of the cohort it read (arguments hash, content id) and its resolved
    precision."""
    eval_input = None if setting.test_input == setting.train_input else setting.test_input
    arguments = {"arch": setting.arch, "train_input": setting.train_input,
                 "eval_input": eval_input, "split": k, "precision": "auto"}
    (folder / "run.json").write_text(json.dumps({"arguments": arguments}))
    cohort = input_identity(json.loads((work / "cohort" / "done.json").read_text()))
    write_done(folder, arguments, RUN_OUTPUTS, inputs={"cohort": cohort},
               precision=precision, **facts)


def expected_run(root, images, labels, setting, k, tuned):
    """Direct computation of one run's numbers with the metric functions."""
    index = {im: i for i, im in enumerate(images)}
    folder = root / "runs" / setting / f"split{k}"
    out = {}
    for part in ("val", "test"):
        probs = np.load(folder / f"{part}_probs.npy").astype(np.float64)
        ids = [r["image"] for r in read_rows(folder / f"{part}_ids.csv")]
        out[part] = (np.column_stack([probs, no_finding_score(probs)]),
                     labels[[index[i] for i in ids]])
    (vs, vy), (ts, ty) = out["val"], out["test"]
    thresholds = ([best_f1_threshold(vy[:, j], vs[:, j]).threshold for j in range(6)] if tuned
                  else [0.5] * 6)
    pred = ts >= np.array(thresholds)
    prf = np.array([precision_recall_f1(ty[:, j], pred[:, j]) for j in range(6)])
    return {"auroc": [auroc(ty[:, j], ts[:, j]) for j in range(6)], "prf": prf,
            "mantel": mantel(cooccurrence(ty), cooccurrence(pred), method="spearman")}


def parse_cell(text):
    mean, sd = text.rstrip("*").split(" ± ")
    return float(mean), (None if sd == "n/a" else float(sd))


def test_report_numbers_files_and_figures(tmp_path):
    root, images, labels = build_work(tmp_path / "work")
    main(["--work", str(root)])
    out = root / "results"
    settings = ["resnet50_original", "resnet50_m50"]
    expected = {s: [expected_run(root, images, labels, s, k, tuned=(s != settings[0]))
                    for k in range(3)]
                for s in settings}

    table2 = {r["setting"]: r for r in read_rows(out / "table2.csv")}
    table3 = {r["setting"]: r for r in read_rows(out / "table3.csv")}
    assert list(table2) == settings  # study order: original before M-50
    for s in settings:
        runs = expected[s]
        for j, label in enumerate(LABELS):
            assert table2[s][label] == mean_sd([100 * e["auroc"][j] for e in runs])
        macro = [100 * np.mean(e["auroc"][:5]) for e in runs]
        assert table2[s]["Macro"] == mean_sd(macro)
        for m, name in enumerate(["P", "R", "F1"]):
            assert table3[s][f"Macro {name}"] == mean_sd([100 * e["prf"][:5, m].mean()
                                                          for e in runs])
            assert table3[s][f"No Finding {name}"] == mean_sd([100 * e["prf"][5, m] for e in runs])
    assert table2[settings[0]]["Train (min)"] == mean_sd([1.0, 2.0, 3.0])  # timing.json
    assert table2[settings[1]]["Train (min)"] == mean_sd([2.0, 2.0, 2.0])  # summed from history.csv

    by_split = read_rows(out / "auroc_by_split.csv")
    mass = [float(r["auroc"]) for r in by_split
            if r["setting"] == settings[1] and r["label"] == "Mass"]
    np.testing.assert_allclose(mass, [e["auroc"][0] for e in expected[settings[1]]], rtol=0,
                               atol=1e-12)

    ttests = read_rows(out / "ttests.csv")
    assert len(ttests) == 2  # one pair x two metrics
    row = next(r for r in ttests if r["metric"] == "macro_auroc")
    ref = paired_ttest([np.mean(e["auroc"][:5]) for e in expected[settings[0]]],
                       [np.mean(e["auroc"][:5]) for e in expected[settings[1]]])
    assert float(row["t"]) == pytest.approx(ref.t) and float(row["p"]) == pytest.approx(ref.p)
    assert int(row["df"]) == 2 and row["headline"] == "True"
    row = next(r for r in ttests if r["metric"] == "no_finding_auroc")
    ref = paired_ttest([e["auroc"][5] for e in expected[settings[0]]],
                       [e["auroc"][5] for e in expected[settings[1]]])
    assert float(row["t"]) == pytest.approx(ref.t)

    mantel_rows = read_rows(out / "mantel.csv")
    assert len(mantel_rows) == 6
    for r in mantel_rows:
        e = expected[r["setting"]][int(r["split"])]["mantel"]
        assert float(r["r"]) == pytest.approx(e.r) and float(r["p"]) == pytest.approx(e.p)
        assert r["exact"] == "True" and r["permutations"] == "720"

    for name in ["table1.csv", "table1.md", "table2.md", "table3.md", "prf_by_split.csv",
                 "run.json",
                 "figures/cooccurrence_dataset.png", "figures/roc_curves.png",
                 "figures/cooccurrence_predicted.png"]:
        assert (out / name).is_file(), name
        assert f"`{name}`" in (out / "summary.md").read_text()
    assert (out / "figures" / "roc_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| resnet50_original | 3 |" in (out / "table2.md").read_text()
    assert read_rows(out / "table1.csv")[-1]["label"] == "Total unique"
    summary = (out / "summary.md").read_text()
    assert "thresholds.csv" in summary and "tuned on validation by the report" in summary
    assert "`arch=resnet50`" in summary and "resnet50_original, resnet50_m50 on split 0" in summary


def test_report_with_one_split_and_cross_setting(tmp_path):
    settings = ("densenet121_m15_on_original", "densenet121_original", "densenet121_m15")
    root, _, _ = build_work(tmp_path / "work", settings=settings, n_splits=1)
    out = tmp_path / "results"
    main(["--work", str(root), "--out", str(out), "--no-figures"])
    table2 = read_rows(out / "table2.csv")
    assert [r["setting"] for r in table2] == ["densenet121_original", "densenet121_m15",
                                              "densenet121_m15_on_original"]
    assert all(parse_cell(r["Macro"])[1] is None for r in table2)  # "x ± n/a"
    ttests = read_rows(out / "ttests.csv")
    assert len(ttests) == 6 and all(r["t"] == "" and "skipped" in r["note"] for r in ttests)
    assert [r["headline"] for r in ttests[:3]] == ["True", "False", "False"]
    assert "t-tests skipped" in (out / "summary.md").read_text()
    assert not (out / "figures").exists()


def test_parse_setting():
    s = parse_setting("resnet50_m50")
    assert (s.name, s.arch, s.train_input, s.test_input) == ("resnet50_m50", "resnet50", "m50",
                                                             "m50")
    s = parse_setting("densenet121_m15_on_original")
    assert (s.arch, s.train_input, s.test_input) == ("densenet121", "m15", "original")


@pytest.fixture(scope="module")
def base_work(tmp_path_factory):
    root, _, _ = build_work(tmp_path_factory.mktemp("base") / "work", n_splits=2, n_images=120)
    return root


@pytest.fixture
def work(base_work, tmp_path):
    return shutil.copytree(base_work, tmp_path / "work")


def run_error(work, *extra):
    with pytest.raises(SystemExit) as error:
        main(["--work", str(work), "--no-figures", *extra])
    return str(error.value)


def test_error_probs_rows_differ_from_ids(work):
    folder = work / "runs" / "resnet50_m50" / "split1"
    np.save(folder / "test_probs.npy", np.load(folder / "test_probs.npy")[:-1])
    message = run_error(work)
    assert message.startswith("error:") and str(folder / "test_probs.npy") in message
    assert str(folder / "test_ids.csv") in message and "rows" in message


def test_error_missing_file_and_skip_incomplete(work, capsys):
    missing = work / "runs" / "resnet50_m50" / "split0" / "val_probs.npy"
    missing.unlink()
    message = run_error(work)
    assert str(missing.parent) in message and "val_probs.npy" in message
    main(["--work", str(work), "--no-figures", "--skip-incomplete"])
    summary = (work / "results" / "summary.md").read_text()
    assert "**WARNING: 1 unfinished run folder(s) LEFT OUT" in summary
    assert "LEFT OUT" in capsys.readouterr().err
    assert [r["splits"] for r in read_rows(work / "results" / "table2.csv")] == ["2", "1"]


def test_stale_run_without_done_json_is_refused(work, capsys):
    """A fresh run killed over a finished one: the old outputs are all there, done.json is not."""
    stale = work / "runs" / "resnet50_original" / "split1"
    (stale / "done.json").unlink()
    also = work / "runs" / "resnet50_m50" / "split0"
    (also / "done.json").unlink()
    message = run_error(work)
    assert "2 run folder(s) are not finished" in message
    assert f"{stale}: no done.json" in message and f"{also}: no done.json" in message
    assert "--skip-incomplete" in message
    assert not (work / "results" / "table2.csv").exists()
    main(["--work", str(work), "--no-figures", "--skip-incomplete"])
    summary = (work / "results" / "summary.md").read_text()
    warning = summary.index("**WARNING: 2 unfinished run folder(s) LEFT OUT")
    assert warning < summary.index("## Data")
    assert str(stale) in summary and str(stale) in capsys.readouterr().err
    table2 = {r["setting"]: r["splits"] for r in read_rows(work / "results" / "table2.csv")}
    assert table2 == {"resnet50_original": "1", "resnet50_m50": "1"}
    splits = {(r["setting"], r["split"])
              for r in read_rows(work / "results" / "auroc_by_split.csv")}
    assert ("resnet50_original", "1") not in splits and ("resnet50_m50", "0") not in splits


def test_error_unknown_image_and_wrong_part(work):
    ids = work / "runs" / "resnet50_original" / "split0" / "test_ids.csv"
    rows = read_rows(ids)
    val_image = read_rows(ids.with_name("val_ids.csv"))[0]["image"]
    write_rows(ids, ["image"], [[val_image]] + [[r["image"]] for r in rows[1:]])
    message = run_error(work)
    assert str(ids) in message and "splits.csv" in message and "test part" in message
    write_rows(ids, ["image"], [["not_in_cohort.png"]] + [[r["image"]] for r in rows[1:]])
    message = run_error(work)
    assert str(ids) in message and "cohort.csv" in message


def test_error_bad_probabilities_and_thresholds(work):
    folder = work / "runs" / "resnet50_original" / "split1"
    write_rows(folder / "thresholds.csv", ["label", "threshold"], [["Mass", 0.5]])
    message = run_error(work)
    assert str(folder / "thresholds.csv") in message and "Nodule" in message
    np.save(folder / "val_probs.npy", np.load(folder / "val_probs.npy") * 10 - 5)
    message = run_error(work)
    assert str(folder / "val_probs.npy") in message and "[0, 1]" in message


def test_error_missing_cohort_and_unknown_setting(work):
    assert "resnet50_densenet" in run_error(work, "--settings", "resnet50_densenet")
    (work / "cohort" / "cohort.csv").unlink()
    message = run_error(work)
    assert "['cohort.csv'], which are missing" in message and "re-run the cohort" in message


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "example:" in capsys.readouterr().out


def test_label_with_one_class_in_a_test_set(work):
    """A test set without Fibrosis: that AUROC is undefined there, the cell is marked, macro uses 4
    labels."""
    folder = work / "runs" / "resnet50_m50" / "split0"
    cohort = {r["image"]: r for r in read_rows(work / "cohort" / "cohort.csv")}
    ids = [r["image"] for r in read_rows(folder / "test_ids.csv")]
    keep = [i for i, image in enumerate(ids) if cohort[image]["Fibrosis"] == "0"]
    np.save(folder / "test_probs.npy", np.load(folder / "test_probs.npy")[keep])
    write_rows(folder / "test_ids.csv", ["image"], [[ids[i]] for i in keep])
    (work / "seg").mkdir()
    write_rows(work / "seg" / "curves.csv", ["epoch", "part", "loss", "dice_loss", "bce_loss"],
               [[1, "train", 0.5, 0.3, 0.2], [1, "val", 0.6, 0.4, 0.2], [2, "val", 0.4, 0.3, 0.1]])
    main(["--work", str(work), "--no-figures"])         # fine-tuning unfinished: not read
    assert "curves.csv` not read (" in (work / "results" / "summary.md").read_text()
    write_done(work / "seg", {}, ["curves.csv"], done="done_finetune.json")
    main(["--work", str(work), "--no-figures"])
    out = work / "results"
    row = {r["setting"]: r for r in read_rows(out / "table2.csv")}["resnet50_m50"]
    assert row["Fibrosis"].endswith("*") and not row["Mass"].endswith("*")
    assert row["Macro"].endswith(FEWER) and "*" not in row["Macro"]  # 4 findings on split 0
    table3 = {r["setting"]: r for r in read_rows(out / "table3.csv")}
    assert table3["resnet50_m50"]["Macro F1"].endswith(FEWER)
    assert not table3["resnet50_original"]["Macro F1"].endswith(FEWER)
    assert f"{FEWER} on some split the macro leaves out" in (out / "table2.md").read_text()
    assert "No Finding is not in it" in (out / "table2.md").read_text()
    by_split = [r for r in read_rows(out / "auroc_by_split.csv")
                if r["setting"] == "resnet50_m50" and r["split"] == "0"]
    values = {r["label"]: r["auroc"] for r in by_split}
    assert values["Fibrosis"] == ""
    assert float(values["macro"]) == pytest.approx(np.mean([float(values[x])
                                                            for x in FINDINGS[:4]]))
    assert {r["label"]: r["macro_n_findings"] for r in by_split}["macro"] == "4"   # as summary.md
    assert parse_cell(row["Fibrosis"].rstrip("*"))[1] is None  # the one remaining split
    summary = (out / "summary.md").read_text()
    assert "Fibrosis: one class only in the test set" in summary
    assert ("resnet50_m50 split(s) 0: macro AUROC and P/R/F1 over 4 of the 5 findings (Fibrosis "
            "left out" in summary)
    assert "val loss: last 0.4000, lowest 0.4000 (epoch 2)" in summary


def test_intervals_delong_and_holm_in_the_report(tmp_path):
    settings = ("resnet50_original", "resnet50_m15", "resnet50_m50")
    root, images, labels = build_work(tmp_path / "work", settings=settings, n_splits=3,
                                      n_images=160)
    main(["--work", str(root), "--no-figures", "--bootstrap", "300"])
    out = root / "results"
    index = {im: i for i, im in enumerate(images)}

    def test_set(setting, k):
        folder = root / "runs" / setting / f"split{k}"
        probs = np.load(folder / "test_probs.npy").astype(np.float64)
        ids = [r["image"] for r in read_rows(folder / "test_ids.csv")]
        return labels[[index[i] for i in ids]], np.column_stack([probs, no_finding_score(probs)])

    # per-split intervals: the seeded stratified bootstrap of that run's test set
    by_split = read_rows(out / "auroc_by_split.csv")
    assert list(by_split[0]) == ["setting", "split", "label", "auroc", "ci_low", "ci_high",
                                 "macro_n_findings"]
    assert {r["macro_n_findings"] for r in by_split if r["label"] == "macro"} == {"5"}
    assert {r["macro_n_findings"] for r in by_split if r["label"] != "macro"} == {""}
    truth, scores = test_set("resnet50_m15", 2)
    expected = bootstrap_aurocs(truth[:, :5], scores[:, :5], n_boot=300, seed=[0, 2, 0])
    rows = {r["label"]: r for r in by_split if (r["setting"], r["split"]) == ("resnet50_m15", "2")}
    assert [float(rows["Nodule"]["ci_low"]), float(rows["Nodule"]["ci_high"])] == \
        pytest.approx(expected.labels[1], abs=1e-12)
    assert [float(rows["macro"]["ci_low"]), float(rows["macro"]["ci_high"])] == \
        pytest.approx(expected.macro, abs=1e-12)
    for r in by_split:
        assert 0 <= float(r["ci_low"]) <= float(r["ci_high"]) <= 1

    # DeLong for the headline pairs only (original vs m15, original vs m50), every split
    delong_rows = read_rows(out / "delong.csv")
    assert {(r["a"], r["b"]) for r in delong_rows} == {("resnet50_original", "resnet50_m15"),
                                                       ("resnet50_original", "resnet50_m50")}
    assert len(delong_rows) == 2 * 3 * 7
    truth, scores_a = test_set("resnet50_original", 1)
    _, scores_b = test_set("resnet50_m50", 1)
    pick = {r["label"]: r for r in delong_rows
            if (r["b"], r["split"]) == ("resnet50_m50", "1")}
    ref = delong_test(truth[:, 5], scores_a[:, 5], scores_b[:, 5])
    assert float(pick["No Finding"]["p"]) == pytest.approx(ref.p, rel=1e-9)
    assert float(pick["No Finding"]["cov"]) == pytest.approx(ref.cov, rel=1e-9)
    ref = delong_macro(truth[:, :5], scores_a[:, :5], scores_b[:, :5])
    assert float(pick["macro"]["z"]) == pytest.approx(ref.z, rel=1e-9)
    assert float(pick["macro"]["auc_a"]) == pytest.approx(np.mean(
        [auroc(truth[:, j], scores_a[:, j]) for j in range(5)]), abs=1e-12)

    # t-tests keep their columns, gain p_holm (one family per metric) and delong_p (headline rows)
    ttests = read_rows(out / "ttests.csv")
    assert list(ttests[0])[:11] == ["metric", "a", "b", "t", "df", "p", "headline", "n_splits",
                                    "mean_a", "mean_b", "note"]
    for metric in ("macro_auroc", "no_finding_auroc"):
        family = [r for r in ttests if r["metric"] == metric]
        assert len(family) == 3
        np.testing.assert_allclose([float(r["p_holm"]) for r in family],
                                   holm([float(r["p"]) for r in family]), rtol=1e-12)
    row = next(r for r in ttests if (r["metric"], r["b"]) == ("macro_auroc", "resnet50_m50"))
    macro_p = {r["split"]: float(r["p"]) for r in delong_rows
               if (r["b"], r["label"]) == ("resnet50_m50", "macro")}
    assert row["delong_p"] == " ".join(f"{k}:{macro_p[k]:.3g}" for k in ("0", "1", "2"))
    assert next(r for r in ttests if r["b"] == "resnet50_m50" and r["a"] == "resnet50_m15"
                )["delong_p"] == ""
    summary = (out / "summary.md").read_text()
    assert "p_holm" in summary and "`delong.csv`" in summary and "300 resamples" in summary

    main(["--work", str(root), "--no-figures", "--bootstrap", "0"])
    assert all(r["ci_low"] == r["ci_high"] == "" for r in read_rows(out / "auroc_by_split.csv"))


def test_random_segmenter_is_announced_loudly(work, capsys):
    (work / "seg").mkdir()
    run_json = work / "seg" / "run_finetune.json"
    run_json.write_text(json.dumps({"arguments": {"checkpoint": "micro", "config": None}}))
    main(["--work", str(work), "--no-figures"])
    summary = (work / "results" / "summary.md").read_text()
    assert summary.splitlines()[2].startswith("**WARNING: THE SEGMENTER WAS A RANDOM MODEL")
    assert "RANDOM MODEL" in capsys.readouterr().err
    run_json.write_text(json.dumps({"arguments": {"checkpoint": "lite", "config": "micro"}}))
    main(["--work", str(work), "--no-figures"])
    assert "RANDOM MODEL" in (work / "results" / "summary.md").read_text()
    capsys.readouterr()
    run_json.write_text(json.dumps({"arguments": {"checkpoint": "lite", "config": "lite"}}))
    main(["--work", str(work), "--no-figures"])
    assert "WARNING" not in (work / "results" / "summary.md").read_text()
    assert "WARNING" not in capsys.readouterr().err


ATTRIBUTION_COLUMNS = ["setting", "split", "label", "in_lung_share", "chance_level", "n_images"]


def write_attribution(work, rows, folders=None, header=ATTRIBUTION_COLUMNS):
    """results/attribution.csv and the completion record cxrcls.attribution writes beside it,
    naming the run folders it used (default: every run under WORK/runs)."""
    results = work / "results"
    write_rows(results / "attribution.csv", header, rows)
    folders = folders or sorted((work / "runs").glob("*/split*"))
    write_done(results, {}, ["attribution.csv"], done="done_attribution.json",
               runs=[run_entry(work, folder) for folder in folders])


def test_attribution_table_when_present(work):
    main(["--work", str(work), "--no-figures"])
    assert "Grad-CAM" not in (work / "results" / "summary.md").read_text()
    rows = [[s, k, label, share + 0.1 * k, 0.4, 18]
            for s, share in (("resnet50_original", 0.5), ("resnet50_m50", 0.9))
            for k in (0, 1) for label in ("Mass", "Pneumonia")]
    write_attribution(work, rows)
    main(["--work", str(work), "--no-figures"])
    summary = (work / "results" / "summary.md").read_text()
    assert "| setting | chance | Mass | Pneumonia |" in summary
    share = mean_sd([0.9, 1.0], 2)
    assert f"| resnet50_m50 | 0.40 | {share} | {share} |" in summary
    assert "`attribution.csv`: Grad-CAM" in summary
    rows[0][3] = ""  # an undefined share (no image with positive attribution): left out, marked
    write_attribution(work, rows)
    main(["--work", str(work), "--no-figures"])
    summary = (work / "results" / "summary.md").read_text()
    assert f"| resnet50_original | 0.40 | 0.60 ± n/a* | {mean_sd([0.5, 0.6], 2)} |" in summary
    write_attribution(work, [["x", 0]], header=["setting", "split"])
    main(["--work", str(work), "--no-figures"])
    assert "attribution.csv` is unreadable" in (work / "results" / "summary.md").read_text()
    write_attribution(work, [["x", 0]])                # a row shorter than the header
    main(["--work", str(work), "--no-figures"])
    assert "fewer cells than the header" in (work / "results" / "summary.md").read_text()


def left_out_line(summary):
    lines = [line for line in summary.splitlines() if "Grad-CAM table left out" in line]
    assert len(lines) == 1 and "| setting | chance |" not in summary
    return lines[0]


def test_attribution_of_other_runs_is_left_out_saying_why(work):
    rows = [["resnet50_original", k, "Mass", 0.5, 0.4, 18] for k in (0, 1)]
    write_attribution(work, rows)
    retrained = work / "runs" / "resnet50_original" / "split1"
    record = json.loads((retrained / "done.json").read_text())
    write_done(retrained, {**record["arguments"], "epochs": 9}, RUN_OUTPUTS,  # trained again
               **{k: record[k] for k in ("inputs", "precision")})
    main(["--work", str(work), "--no-figures"])
    line = left_out_line((work / "results" / "summary.md").read_text())
    assert "runs/resnet50_original/split1 was trained again" in line
    record = json.loads((work / "results" / "done_report.json").read_text())
    assert record["attribution"]["included"] is False

    write_attribution(work, rows)                     # made from today's runs: shown
    main(["--work", str(work), "--no-figures", "--settings", "resnet50_m50"])
    line = left_out_line((work / "results" / "summary.md").read_text())
    assert "used runs/resnet50_m50/split0" not in line  # the report read those
    assert "which this report did not read" in line and "resnet50_original" in line

    (work / "results" / "done_attribution.json").unlink()  # killed or still running
    main(["--work", str(work), "--no-figures"])
    assert "no done_attribution.json" in left_out_line(
        (work / "results" / "summary.md").read_text())


def test_report_record_names_every_run_and_the_cohort_it_read(work):
    main(["--work", str(work), "--no-figures", "--skip-incomplete"])
    out = work / "results"
    record = json.loads((out / "done_report.json").read_text())
    folders = sorted(str(p.relative_to(work)) for p in (work / "runs").glob("*/split*"))
    assert sorted(r["folder"] for r in record["runs"]) == folders
    for r in record["runs"]:
        digest = hashlib.sha256((work / r["folder"] / "done.json").read_bytes()).hexdigest()
        assert r["done_sha256"] == digest
    assert record["cohort"]["folder"] == "cohort" and record["split_by"] == "image"
    assert sorted(record["outputs"]) == sorted([*tables.OUTPUTS, "run.json", "summary.md"])
    assert "`done_report.json`" in (out / "summary.md").read_text()
    assert ".cxr-lungmask" not in (out / "summary.md").read_text()


def test_report_refuses_a_folder_of_the_users_files_untouched(work):
    out = work / "my_results"
    out.mkdir()
    (out / "table2.csv").write_bytes(b"my own table\r\n")
    message = run_error(work, "--out", str(out))
    assert message.startswith("error: ") and "table2.csv" in message
    assert [p.name for p in out.iterdir()] == ["table2.csv"]
    assert (out / "table2.csv").read_bytes() == b"my own table\r\n"


def test_report_marks_the_shared_figures_folder_and_refuses_a_users_one(work):
    main(["--work", str(work)])
    figures = work / "results" / "figures"
    assert (figures / FOLDER_MARKER).is_file()       # the other stages writing there can tell
    (figures / FOLDER_MARKER).unlink()               # figures/ now looks like a user's folder
    before = {p.name: p.read_bytes() for p in figures.iterdir()}
    with pytest.raises(SystemExit) as error:
        main(["--work", str(work)])
    assert str(error.value).startswith(f"error: {figures}: holds files this toolkit did not write")
    assert {p.name: p.read_bytes() for p in figures.iterdir()} == before
    assert (work / "results" / "done_report.json").is_file()   # the old report left as it was


def test_report_needs_a_finished_cohort(work):
    (work / "cohort" / "done.json").unlink()
    message = run_error(work)
    assert message.startswith("error: ") and str(work / "cohort") in message
    assert "no done.json" in message and not (work / "results").exists()


def test_flagged_masks_are_listed_in_the_summary_worst_first(work):
    masks = work / "masks"
    masks.mkdir(exist_ok=True)
    header = ["row", "image", "area_fraction", "components", "flag", "action", "shape_score"]
    write_rows(masks / "qc.csv", header,
               [[0, "a.png", 0.2, 2, "ok", "kept", 0.3],
                [1, "b.png", 0.05, 1, "area_low;shape_area", "kept", 1.8],
                [2, "c.png", 0.9, 1, "area_high", "whole image", 4.5]])
    main(["--work", str(work), "--no-figures"])        # no completion record: not read
    assert "qc.csv` not read" in (work / "results" / "summary.md").read_text()
    write_done(masks, {}, ["qc.csv"], done="done_postprocess.json")
    main(["--work", str(work), "--no-figures"])
    summary = (work / "results" / "summary.md").read_text()
    assert "2 of 3 masks flagged" in summary
    listed = [line for line in summary.splitlines() if line.startswith("| 1 |")
              or line.startswith("| 2 |") or line.startswith("| 0 |")]
    assert [line.split(" | ")[1] for line in listed] == ["c.png", "b.png"]


def test_the_summary_and_record_state_the_masks_extent_from_their_record(work):
    main(["--work", str(work), "--no-figures"])          # no masks: no extent stated
    assert json.loads((work / "results" / "done_report.json").read_text())["mask_extent"] is None
    assert "extent" not in (work / "results" / "summary.md").read_text()
    write_done(work / "masks", {}, [], done="done_postprocess.json", extent="full")
    main(["--work", str(work), "--no-figures"])
    assert json.loads((work / "results" / "done_report.json").read_text())["mask_extent"] == "full"
    assert ("- Lung masks' extent: **full** (their segmenter was fine-tuned on whole-lung masks; "
            f"from `{work / 'masks' / 'done_postprocess.json'}`).") in (
        work / "results" / "summary.md").read_text()
    write_done(work / "masks", {}, [], done="done_postprocess.json")     # a record without one
    main(["--work", str(work), "--no-figures"])
    assert "Lung masks' extent: **unrecorded**" in (work / "results" / "summary.md").read_text()


def test_masked_inputs_of_any_radius_sort_by_radius(tmp_path):
    s = parse_setting("resnet50_m100")
    assert (s.arch, s.train_input, s.test_input) == ("resnet50", "m100", "m100")
    names = ["resnet50_overlay", "resnet50_m100", "densenet121_m0", "resnet50_m15_on_original",
             "resnet50_m30", "resnet50_original", "resnet50_m0", "resnet50_m5x"]
    ordered = [x.name for x in sorted(map(parse_setting, names), key=lambda x: x.sort_key)]
    assert ordered == ["resnet50_original", "resnet50_m0", "resnet50_m30", "resnet50_m100",
                       "resnet50_overlay", "resnet50_m5x", "resnet50_m15_on_original",
                       "densenet121_m0"]
    settings = ("resnet50_m100", "resnet50_m0", "resnet50_original")
    root, _, _ = build_work(tmp_path / "work", settings=settings, n_splits=1, n_images=80)
    main(["--work", str(root), "--no-figures", "--bootstrap", "0"])
    assert [r["setting"] for r in read_rows(root / "results" / "table2.csv")] == \
        ["resnet50_original", "resnet50_m0", "resnet50_m100"]


@pytest.mark.parametrize("flag", [["--bootstrap", "-1"], ["--permutations", "0"],
                                  ["--decimals", "-2"], ["--roc-split", "-1"], ["--seed", "x"]])
def test_numeric_flags_are_range_checked(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--work", "unused", *flag])
    assert exit_info.value.code == 2 and flag[0] in capsys.readouterr().err


def test_changed_inputs_names_the_run_and_each_input_made_again(tmp_path):
    work = tmp_path / "work"
    for name in ("cohort", "cache"):
        write_done(work / name, {"made": 1}, [])
    write_done(work / "masks", {"made": 1}, [], done="done_postprocess.json")
    hashes = {name: json.loads(input_record_path(work, name).read_text())["arguments_hash"]
              for name in ("cohort", "cache", "masks/done_postprocess.json")}
    run = work / "runs" / "resnet50_m15" / "split0"
    record = {"inputs": hashes, "mask_sha256": {}}
    assert changed_inputs(work, run, record) is None
    for name, folder, done in (("cohort", "cohort", "done.json"), ("cache", "cache", "done.json"),
                               ("masks/done_postprocess.json", "masks", "done_postprocess.json")):
        write_done(work / folder, {"made": 2}, [], done=done)        # made again, other settings
        assert changed_inputs(work, run, record).startswith(
            f"{run}: trained on another {name} than WORK holds now ({work / folder / done}")
        (work / folder / done).unlink()                                # being made again
        assert f"the {name} it trained on is gone" in changed_inputs(work, run, record)
        write_done(work / folder, {"made": 1}, [], done=done)         # the same inputs again
        assert changed_inputs(work, run, record) is None


def test_report_refuses_a_table1_edited_since_the_cohort_wrote_it(work):
    """The report copies cohort/table1.csv into its Table 1: a count edited by hand (the file
    still well formed) is refused by its sha256 against cohort/done.json, naming the file."""
    path = work / "cohort" / "table1.csv"
    rows = read_rows(path)
    rows[0]["images"] = str(int(rows[0]["images"]) + 1)
    write_rows(path, list(rows[0]), [list(row.values()) for row in rows])
    assert re.search(r"cohort/table1.csv: changed since the cohort .*wrote it .*re-run the cohort",
                     run_error(work))


def test_report_refuses_a_run_trained_on_another_cohort(work):
    main(["--work", str(work), "--no-figures"])
    write_done(work / "cohort", {"seed": 99}, ["cohort.csv", "splits.csv", "table1.csv"],
               split_by="image")                                  # e.g. labels made again
    message = run_error(work)
    run = work / "runs" / "resnet50_m50" / "split0"
    assert f"{run}: trained on another cohort than WORK holds now" in message


def test_report_refuses_a_cohort_or_run_file_changed_since_it_was_written(work):
    """A label edited in cohort.csv, or a run's test_probs.npy copied from another run, after
    their stages finished: the report names the file rather than score it."""
    run, other = (work / "runs" / "resnet50_m50" / f"split{k}" for k in (0, 1))
    write_run_record(work, run, parse_setting("resnet50_m50"), 0,
                     **content_facts(run, RUN_OUTPUTS))          # as cxrcls.train records it
    main(["--work", str(work), "--no-figures"])
    table2 = read_rows(work / "results" / "table2.csv")
    written = (run / "test_probs.npy").read_bytes()
    shutil.copy(other / "test_probs.npy", run / "test_probs.npy")
    assert (f"{run / 'test_probs.npy'}: changed since the training run wrote it"
            in run_error(work))
    (run / "test_probs.npy").write_bytes(written)
    rows = read_rows(work / "cohort" / "cohort.csv")
    rows[0]["Mass"] = str(1 - int(rows[0]["Mass"]))
    write_rows(work / "cohort" / "cohort.csv", list(rows[0]), [list(r.values()) for r in rows])
    assert (f"{work / 'cohort' / 'cohort.csv'}: changed since the cohort (python -m "
            "cxrcls.cohort) wrote it" in run_error(work))
    rows[0]["Mass"] = str(1 - int(rows[0]["Mass"]))
    write_rows(work / "cohort" / "cohort.csv", list(rows[0]), [list(r.values()) for r in rows])
    main(["--work", str(work), "--no-figures"])
    assert read_rows(work / "results" / "table2.csv") == table2


def test_results_edited_after_the_report_are_refused_by_its_readers(work):
    """auroc_by_split.csv edited (or copied from another work folder) after the report finished:
    tightness and compare read it through read_report, which names the file."""
    main(["--work", str(work), "--no-figures"])
    read_report(work)
    path = work / "results" / "auroc_by_split.csv"
    rows = read_rows(path)
    rows[0]["auroc"] = "0.999"
    write_rows(path, list(rows[0]), [list(r.values()) for r in rows])
    with pytest.raises(IncompleteRunError, match=r"results/auroc_by_split.csv: changed since the "
                                                 r"report wrote it"):
        read_report(work)


def remake_cohort(work, flip=None):
    """cohort.csv written again (label `flip` flipped on every image, as from an edited label
    table) and cohort/done.json made again with the same arguments."""
    rows = read_rows(work / "cohort" / "cohort.csv")
    for row in rows if flip else []:
        row[flip] = str(1 - int(row[flip]))
    write_rows(work / "cohort" / "cohort.csv", list(rows[0]), [list(r.values()) for r in rows])
    write_cohort_record(work)


def test_report_refuses_runs_over_a_cohort_made_again_from_other_labels(work):
    before = json.loads((work / "cohort" / "done.json").read_text())
    remake_cohort(work)                                   # made again from the same labels
    main(["--work", str(work), "--no-figures"])
    table2 = read_rows(work / "results" / "table2.csv")
    remake_cohort(work, flip="Mass")                      # same arguments, every Mass flipped
    after = json.loads((work / "cohort" / "done.json").read_text())
    assert after["arguments_hash"] == before["arguments_hash"]
    message = run_error(work)
    run = work / "runs" / "resnet50_m50" / "split0"
    assert (f"{run}: trained on another cohort than WORK holds now: its cohort.csv/splits.csv/"
            f"table1.csv differ ({work / 'cohort' / 'done.json'} was made again from other "
            "data") in message
    remake_cohort(work, flip="Mass")                      # the labels the runs were scored on
    main(["--work", str(work), "--no-figures"])
    assert read_rows(work / "results" / "table2.csv") == table2


def test_a_run_recording_bare_arguments_hashes_is_checked_by_arguments(work):
    folder = work / "runs" / "resnet50_m50" / "split0"
    record = json.loads((folder / "done.json").read_text())
    bare = {**record, "inputs": {"cohort": record["inputs"]["cohort"]["arguments_hash"]}}
    remake_cohort(work, flip="Mass")                      # same arguments: not seen in a bare hash
    assert changed_inputs(work, folder, record).startswith(
        f"{folder}: trained on another cohort than WORK holds now: its cohort.csv/splits.csv")
    assert changed_inputs(work, folder, bare) is None
    write_done(work / "cohort", {"seed": 99}, ["cohort.csv"])          # other arguments
    assert "made again with other arguments" in changed_inputs(work, folder, bare)


def test_report_refuses_a_run_whose_arguments_are_another_setting(work):
    folder = work / "runs" / "resnet50_m50" / "split1"
    write_run_record(work, folder, parse_setting("resnet50_m50_on_original"), 1)
    message = run_error(work)
    assert f"{folder}: trained as resnet50_m50_on_original" in message
    assert "its folder says resnet50_m50" in message and not (work / "results").exists()


def test_report_refuses_mixed_precisions_and_records_the_one_it_reports(work):
    main(["--work", str(work), "--no-figures"])
    assert json.loads((work / "results" / "done_report.json").read_text())["precision"] == "fp32"
    folder = work / "runs" / "resnet50_m50" / "split1"
    write_run_record(work, folder, parse_setting("resnet50_m50"), 1, precision="bf16")
    message = run_error(work)
    assert "different precisions" in message
    assert f"bf16: {folder}" in message and "fp32: " in message
    main(["--work", str(work), "--no-figures", "--settings", "resnet50_original"])
    assert json.loads((work / "results" / "done_report.json").read_text())["precision"] == "fp32"


def test_thresholds_csv_with_a_repeated_or_unknown_label_is_refused(work):
    """Two rows for one label would leave the threshold to the row order: refused, naming both."""
    folder = work / "runs" / "resnet50_m50" / "split0"
    rows = [[label, 0.5, 0.5] for label in LABELS]
    write_rows(folder / "thresholds.csv", ["label", "threshold", "val_f1"],
               rows + [["Edema", 0.9, 0.5], ["Effusion", 0.5, 0.5]])
    message = run_error(work)
    assert str(folder / "thresholds.csv") in message and "['Edema', 'Effusion']" in message


def test_summary_describes_every_file_the_stages_write_into_results(tmp_path):
    """summary.md's Files section names what each file in results/ is, for every stage that writes
    there (the report, cxrseg.figures, cxrcls.attribution, cxrstats.tightness)."""
    from cxrcls import attribution
    from cxrseg import figures
    from cxrseg.records import SEGFIGURES
    from cxrstats import report_figures, tightness
    from cxrstats.summary import files_section
    names = [*tables.OUTPUTS, *report_figures.FIGURES, "run.json",
             *(f"figures/{n}" for n in [*figures.OUTPUTS, SEGFIGURES]),
             *attribution.OUTPUTS, attribution.DONE, *tightness.OUTPUTS, tightness.DONE]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    undescribed = [line for line in files_section(tmp_path) if "other output found" in line]
    assert undescribed == []
