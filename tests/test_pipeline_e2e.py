"""End to end, tiny profile, every stage through a fake `srun`: a plain `make` (no goal) with
launchers runs every stage once with the right kind; a step that fails stops make, and the next
`make` resumes through the launcher with only what was left; then `make reproduce` without
launchers does nothing (same graph, same recorded command lines), and deleting one run re-trains
that run only. The finished tiny folder is also checked against docs/DESIGN.md: shapes, dtypes,
columns and the records every run*.json holds."""
import csv
import json
import os
import re
import shutil

import numpy as np
import pytest

from makeutil import HAVE_MAKE, SETUP, run_make, write_fake_srun

STAGE_LINE = re.compile(r"^>> (.+)$", re.MULTILINE)
GPU_FLAG = "--gres=gpu:1"
CPU_FLAG = "--cpus-per-task=1"
KINDS = {"cxrcls.demo_data": "cpu", "cxrseg.split": "cpu", "cxrseg.finetune": "gpu",
         "cxrseg.evaluate": "gpu", "cxrcls.cohort": "cpu", "cxrcls.cache": "cpu",
         "cxrseg.predict 0/2": "gpu", "cxrseg.predict 1/2": "gpu", "cxrseg.gather": "cpu",
         "cxrseg.postprocess": "cpu", "cxrcls.train": "gpu",
         "cxrseg.figures": "cpu", "cxrstats.report": "cpu"}
FAILING_RUN = "runs/resnet18_m50/split1"


# docs/DESIGN.md's columns of the files every tiny run writes (relative to WORK; runs/ per run).
COLUMNS = {
    "seg/splits.csv": ["stem", "dataset", "part"],
    "seg/curves.csv": ["epoch", "part", "loss", "dice_loss", "bce_loss"],
    "cohort/cohort.csv": ["image", "Mass", "Nodule", "Pneumonia", "Edema", "Fibrosis",
                          "No Finding", "patient_id"],
    "cohort/splits.csv": ["image", "split", "part"],
    "cohort/table1.csv": ["label", "images", "drawn", "available"],
    "cache/index.csv": ["row", "image"],
    "masks/index.csv": ["row", "image"],
    "masks/prompts.csv": ["row", "image", "prior_x0", "prior_y0", "prior_x1", "prior_y1",
                          "x0", "y0", "x1", "y1"],
    "history.csv": ["epoch", "train_loss", "val_loss", "val_macro_auroc", "seconds"],
    "thresholds.csv": ["label", "threshold", "val_f1"],
    "val_ids.csv": ["image"],
    "test_ids.csv": ["image"],
    "results/mantel.csv": ["setting", "split", "r", "p", "permutations", "exact"],
    "results/auroc_by_split.csv": ["setting", "split", "label", "auroc", "ci_low", "ci_high",
                                   "macro_n_findings"],
}
TIMING_KEYS = ["train_seconds", "epochs", "best_epoch", "device", "device_name", "precision",
               "optimizer", "world_size", "stopped_early"]
RUN_JSON_KEYS = {"arguments", "seed", "git_commit", "versions", "seconds"}
# The run records of the stages that run a network (the gathered masks' too): `precision` used.
NETWORK_RUN_JSONS = ["seg/run_finetune.json", "seg/run_evaluate.json", "masks/run_predict.json",
                     "masks/shards/*/run_predict.json", "runs/*/split*/run.json"]


def _header(path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


def check_contract(work) -> None:
    """A finished tiny work folder against docs/DESIGN.md (AssertionError naming the file)."""
    runs = sorted(work.glob("runs/*/split*"))
    for name, columns in COLUMNS.items():
        for path in [work / name] if "/" in name else [run / name for run in runs]:
            assert _header(path) == columns, path
    assert _header(work / "masks" / "qc.csv")[:6] == ["row", "image", "area_fraction",
                                                      "components", "flag", "action"]
    assert _header(work / "masks" / "qc.csv")[-1] == "note"
    images = np.load(work / "cache" / "images.npy")
    assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1] == images.shape[2]
    for mask in ("raw", "eroded", "m15", "m50"):
        masks = np.load(work / "masks" / f"{mask}.npy")
        assert masks.shape == images.shape and masks.dtype == np.uint8, mask
        assert set(np.unique(masks)) <= {0, 1}, mask
    for run in runs:
        for part in ("val", "test"):
            probs = np.load(run / f"{part}_probs.npy")
            rows = (run / f"{part}_ids.csv").read_text().splitlines()[1:]
            assert probs.dtype == np.float32 and probs.shape == (len(rows), 5), run / part
        assert list(json.loads((run / "timing.json").read_text())) == TIMING_KEYS, run
    for path in sorted(work.rglob("run*.json")):
        assert RUN_JSON_KEYS <= json.loads(path.read_text()).keys(), path
    for pattern in NETWORK_RUN_JSONS:
        for path in sorted(work.glob(pattern)):
            assert json.loads(path.read_text()).get("precision") in ("fp32", "bf16"), path


def _stages(output: str) -> list[str]:
    return STAGE_LINE.findall(output)


def _steps(log) -> list[tuple[str, str]]:
    """(kind, job) per srun call: job is the module, or the run folder for a training run."""
    steps = []
    for line in log.read_text().splitlines():
        args = line.split("\t")
        kind = "gpu" if GPU_FLAG in args else "cpu" if CPU_FLAG in args else "?"
        module = args[args.index("-m") + 1]
        run = re.search(r"--out \S+/(runs/\S+)", " ".join(args))
        shard = re.search(r"--shard (\S+)", " ".join(args))
        job = run.group(1) if module == "cxrcls.train" else module
        steps.append((kind, f"{job} {shard.group(1)}" if shard else job))
    return steps


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed")
@pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (the tests never install)")
def test_tiny_plain_make_through_srun_resumes_then_nothing_then_only_the_deleted_run(tmp_path):
    work = tmp_path / "work"
    shim = write_fake_srun(tmp_path / "bin")
    log = tmp_path / "srun.log"
    env = {"PATH": f"{shim.parent}:{os.environ['PATH']}", "SRUN_LOG": str(log),
           "SRUN_FAIL_MATCH": f"{FAILING_RUN} "}
    launch = ["PROFILE=tiny", f"WORK={work}", f"LAUNCH_GPU=srun {GPU_FLAG}",
              f"LAUNCH_CPU=srun {CPU_FLAG}"]

    # 1. Plain `make`: the injected failure of one training step stops it.
    first = run_make(*launch, env=env, check=False)
    assert first.returncode != 0 and "injected by the test" in first.stderr
    assert (log.parent / "srun.log.failed").exists()
    ran_first = _stages(first.stdout)
    assert "report" not in ran_first and f"train {FAILING_RUN[5:]}" in ran_first

    # 2. The next plain `make` runs, through srun, only what was left.
    second = run_make(*launch, env=env)
    ran_second = _stages(second.stdout)
    assert ran_second[0] == f"train {FAILING_RUN[5:]}" and ran_second[-1] == "report"
    assert not set(ran_second) & (set(ran_first) - {f"train {FAILING_RUN[5:]}"})
    steps = _steps(log)
    jobs = [job for _, job in steps]
    runs = [f"runs/resnet18_{i}/split{k}" for i in ("original", "m50") for k in (0, 1)]
    assert sorted(set(jobs)) == sorted(set(KINDS) - {"cxrcls.train"} | set(runs))
    for kind, job in steps:
        assert kind == KINDS.get(job, "gpu"), (kind, job)
        assert jobs.count(job) == (2 if job == FAILING_RUN else 1), (job, jobs)
    assert "stage times" in second.stdout and "total" in second.stdout

    results = work / "results"
    for name in ("table1.csv", "table2.csv", "table2.md", "table3.csv", "ttests.csv", "mantel.csv",
                 "summary.md"):
        assert (results / name).stat().st_size > 0, name
    assert list((results / "figures").glob("*.png"))
    for run in runs:
        assert (work / run / "test_probs.npy").is_file() and (work / run / "timing.json").is_file()
    table2 = (results / "table2.csv").read_text()
    assert "resnet18_original" in table2 and "resnet18_m50" in table2
    check_contract(work)

    # 3. `make reproduce` without launchers does nothing: plain make built the same graph with the
    # same recorded command lines, and the launchers are not part of them.
    base = ["PROFILE=tiny", f"WORK={work}"]
    assert run_make("-q", *base, str(results / ".done-report"), check=False).returncode == 0
    assert _stages(run_make(*base, "reproduce").stdout) == []
    assert _stages(run_make(*base).stdout) == []

    # 4. Deleting one run re-trains that run only (and then re-writes the report).
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/split*/.done-train")}
    shutil.rmtree(work / "runs" / "resnet18_m50" / "split1")
    again = _stages(run_make(*base, "reproduce").stdout)
    assert again == ["train resnet18_m50/split1", "report"], again
    for path, mtime in stamps.items():
        if "resnet18_m50/split1" not in str(path):
            assert path.stat().st_mtime_ns == mtime, path
