"""The Makefile's pipeline, checked with `make -n` (nothing runs; fast): plain `make` is `make
reproduce`, no undefined variables, launchers in front of each stage by kind, and the variables
SPLIT_BY, INPUTS (m<r>; which names pass: tests/test_foundation_input_names.py), ATTRIBUTION,
SEG_MODEL, EXTENT, FINETUNE2_ARGS and the targets tightness, compare, lint; the checks when Make
starts (repeated or unknown ARCHS/INPUTS, PROFILE, the paper profile's paths, GPU slot settings,
folders Make cannot quote, flags Make sets in a *_ARGS, EXTENT); and, with a stand-in launcher
that runs nothing, one make per work folder, a WORK holding files of the user's, and what the
content checksums (cohort/.sum-images, data/.sum-seg, masks/.sum-<name>) keep from re-running."""
import fcntl
import hashlib
import os
import re
import subprocess
import sys
import time

import pytest

from cxrcls.imagenet_files import IMAGENET_FILES
from makeutil import HAVE_MAKE, ROOT, SETUP, commands, run_make

pytestmark = [
    pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed"),
    pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (tests never install)"),
]

GPU = "gpu-launcher"
CPU = "cpu-launcher"
UNDEFINED = re.compile(r"^(\S+):\d+: warning: undefined variable '([^']*)'", re.MULTILINE)


def _dry(work, *args, check=True):
    return run_make("-n", "--warn-undefined-variables", f"WORK={work}", *args, check=check)


def _finish(work, *args, launcher_args=(), env=None, check=True):
    """A real `make reproduce` of the tiny profile with a stand-in launcher (no stage runs, each
    one "succeeds"): it writes every stage's stamp and record (<stamp>.args) as a real run does.
    The log of the stages it launched starts afresh."""
    launcher = _fake_launcher(work.parent, *launcher_args)
    _fake_outputs(work)
    work.with_name(work.name + ".log").unlink(missing_ok=True)
    return run_make("reproduce", "PROFILE=tiny", f"WORK={work}", *launcher, *args,
                    env={"FAKE_WORK": str(work), **(env or {})}, check=check)


# The outputs of the stand-in stages that Make's checksums read: the mask of a run's input, the
# cohort's image list, the demo's segmentation pairs.
FAKE_OUTPUTS = {"masks/m50.npy": "mask", "cohort/cohort.csv": "image,Mass\na.png,0\n",
                "data/seg/images/s.png": "image", "data/seg/masks/s.png": "mask"}


def _fake_outputs(work):
    """The stage folders and FAKE_OUTPUTS, as the real stages leave them (kept when there)."""
    for folder in ("masks", "cohort", "data"):
        (work / folder).mkdir(parents=True, exist_ok=True)
        (work / folder / ".cxr-lungmask").write_text("")
    for name, content in FAKE_OUTPUTS.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        if not (work / name).exists():
            (work / name).write_text(content)


def _records(work) -> dict:
    """Each stamp's record (the command line its stage last started with), by the stamp's path."""
    return {str(p.relative_to(work))[:-len(".args")]: p.read_text()
            for p in sorted(work.rglob(".done-*.args"))}


def _lite_installed() -> bool:
    from vendor_medsam.weights import find_lite_weights  # light: no torch
    return find_lite_weights() is not None


def _assert_no_undefined(result):
    ours = [m for m in UNDEFINED.finditer(result.stderr)]
    assert not ours, result.stderr


@pytest.mark.parametrize("profile", ["tiny", "demo"])
def test_plain_make_runs_exactly_what_make_reproduce_runs(tmp_path, profile):
    plain = _dry(tmp_path / "w", f"PROFILE={profile}")
    goal = _dry(tmp_path / "w", f"PROFILE={profile}", "reproduce")
    assert commands(plain.stdout) == commands(goal.stdout)
    assert plain.stdout == goal.stdout and plain.stderr == goal.stderr
    stages = commands(plain.stdout)
    assert any("-m cxrseg.finetune" in c for c in stages) and any("-m cxrstats.report" in c
                                                                    for c in stages)
    _assert_no_undefined(plain)
    _assert_no_undefined(goal)
    # A dry run records nothing (<stamp>.args holds the command line of a stage that started).
    assert not _records(tmp_path / "w")


def test_demo_plain_make_uses_litemedsam_when_installed(tmp_path):
    if not _lite_installed():
        pytest.skip("LiteMedSAM weights not installed")
    plain = _dry(tmp_path / "w")
    finetune = [c for c in commands(plain.stdout) if "-m cxrseg.finetune" in c]
    assert len(finetune) == 1 and "--checkpoint lite --config lite" in finetune[0]
    assert "RANDOM" not in plain.stderr


def test_plain_make_warns_loudly_when_the_demo_falls_back_to_a_random_segmenter(tmp_path):
    plain = _dry(tmp_path / "w", "LITE_WEIGHTS=")
    finetune = [c for c in commands(plain.stdout) if "-m cxrseg.finetune" in c]
    assert "--checkpoint micro" in finetune[0]
    assert "RANDOM micro model" in plain.stderr


@pytest.mark.parametrize("goal", ["test", "test-fast", "bench", "setup", "lint", "clean-work"])
def test_non_pipeline_goals_touch_nothing_under_work(tmp_path, goal):
    result = _dry(tmp_path / "w", goal, "PROFILE=paper")    # paper: no NIH_DIR, yet no error
    _assert_no_undefined(result)
    assert not _records(tmp_path / "w")


def test_clean_work_deletes_a_work_folder_but_refuses_one_holding_files_of_the_user(tmp_path):
    work = tmp_path / "w"
    (work / "seg").mkdir(parents=True)
    (work / "seg" / ".cxr-lungmask").write_text("")
    (work / "seg" / "best.pt").write_text("x")
    (work / "thesis.tex").write_text("mine")
    result = run_make("clean-work", f"WORK={work}", check=False)
    assert result.returncode != 0 and "thesis.tex" in result.stderr, result.stderr
    assert (work / "thesis.tex").read_text() == "mine" and (work / "seg" / "best.pt").is_file()
    (work / "thesis.tex").unlink()
    run_make("clean-work", f"WORK={work}")
    assert not work.exists()


def test_paper_profile_checks_run_for_plain_make_too(tmp_path):
    result = _dry(tmp_path / "w", "PROFILE=paper", check=False)
    assert result.returncode != 0 and "PROFILE=paper needs NIH_DIR" in result.stderr
    assert "cxrcls.cohort" not in result.stdout



def test_compare_of_two_folders_of_your_own_needs_no_profile_data(tmp_path):
    """`make compare A=... B=...` only reads the two folders: the paper profile's NIH/RSUA and
    weight checks do not apply; with the profile's own folders compare runs the study, and they
    do."""
    own = _dry(tmp_path / "w", "compare", "PROFILE=paper", f"A={tmp_path / 'a'}",
               f"B={tmp_path / 'b'}")
    assert "-m cxrstats.compare" in own.stdout and "cxrcls.cohort" not in own.stdout
    default = _dry(tmp_path / "w", "compare", "PROFILE=paper", check=False)
    assert default.returncode != 0 and "PROFILE=paper needs NIH_DIR" in default.stderr

def _paper(tmp_path, *args, check=True):
    nih = tmp_path / "nih"
    nih.mkdir(exist_ok=True)
    (nih / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n")
    for name in ("images", "masks"):
        (tmp_path / "rsua" / name).mkdir(parents=True, exist_ok=True)
    imagenet = tmp_path / "imagenet"      # weight files present (checked by profiles/user.mk)
    imagenet.mkdir(exist_ok=True)
    for name in IMAGENET_FILES.values():
        (imagenet / name).touch()
    return _dry(tmp_path / "w", "PROFILE=paper", f"NIH_DIR={nih}", f"RSUA_DIR={tmp_path / 'rsua'}",
                f"IMAGENET_DIR={imagenet}", *args, check=check)


@pytest.mark.parametrize("setting, message", [
    ("NIH_DIR={tmp}/nope", "NIH_DIR={tmp}/nope: folder not found"),
    ("NIH_DIR={tmp}/nih/Data_Entry_2017.csv",
     "NIH_DIR={tmp}/nih/Data_Entry_2017.csv: not a folder"),
    ("NIH_LABELS={tmp}/nih/label.csv", "NIH_LABELS={tmp}/nih/label.csv: file not found"),
    ("NIH_LABELS={tmp}/nih", "NIH_LABELS={tmp}/nih: file not found"),
    ("NIH_IMAGES={tmp}/nih/img", "NIH_IMAGES={tmp}/nih/img: image folder {tmp}/nih/img not found"),
    ("RSUA_DIR={tmp}/nope", "RSUA_DIR={tmp}/nope: no images folder {tmp}/nope/images"),
    ("RSUA_IMAGES={tmp}/rsua/img", "RSUA_IMAGES={tmp}/rsua/img: no images folder {tmp}/rsua/img"),
    ("RSUA_MASKS={tmp}/rsua/mask", "RSUA_MASKS={tmp}/rsua/mask: no masks folder {tmp}/rsua/mask"),
])
def test_paper_profile_names_the_data_variable_of_a_wrong_path_before_any_stage(tmp_path, setting,
                                                                                message):
    """A wrong NIH or RSUA path stops Make when it starts, naming the variable to fix (the one
    given, else the folder it defaults from), not in the cohort stage or as a missing target."""
    (tmp_path / "medsam.pth").touch()
    labels = [f"NIH_LABELS={tmp_path}/nih/Data_Entry_2017.csv"]    # NIH_DIR's own check, not its
    result = _paper(tmp_path, f"MEDSAM_CKPT={tmp_path / 'medsam.pth'}",  # missing labels table
                    *(labels if setting.startswith("NIH_DIR") else []),
                    setting.format(tmp=tmp_path), check=False)
    _refused(result, message.format(tmp=tmp_path))
    assert "No rule to make target" not in result.stderr


def test_paper_profile_takes_nih_labels_and_images_without_nih_dir(tmp_path):
    (tmp_path / "medsam.pth").touch()
    nih = tmp_path / "nih"
    result = _paper(tmp_path, f"MEDSAM_CKPT={tmp_path / 'medsam.pth'}", "NIH_DIR=",
                    f"NIH_LABELS={nih}/Data_Entry_2017.csv", f"NIH_IMAGES={nih}")
    cohort = next(c for c in commands(result.stdout) if "-m cxrcls.cohort" in c)
    assert f"--labels {nih}/Data_Entry_2017.csv --images {nih} " in cohort


def test_paper_profile_takes_litemedsam_with_one_variable(tmp_path):
    missing = _paper(tmp_path, check=False)
    assert missing.returncode != 0 and "MEDSAM_CKPT" in missing.stderr
    if not _lite_installed():
        pytest.skip("LiteMedSAM weights not installed")
    lite = _paper(tmp_path, "SEG_MODEL=lite")
    _assert_no_undefined(lite)
    seg = [c for c in commands(lite.stdout)
           if re.search(r"-m cxrseg\.(finetune|evaluate|predict)", c)]
    assert len(seg) == 3 and all("--config lite" in c for c in seg)
    assert "--checkpoint lite" in seg[0] and "--zero-shot lite" in seg[1]
    wrong = _paper(tmp_path, "SEG_MODEL=vit", check=False)
    assert wrong.returncode != 0 and "SEG_MODEL=vit" in wrong.stderr


def test_paper_profile_refuses_lite_when_its_weights_are_missing(tmp_path):
    result = _paper(tmp_path, "SEG_MODEL=lite", "LITE_WEIGHTS=", check=False)
    assert result.returncode != 0 and "LiteMedSAM weights not found" in result.stderr


def _kind(command):
    return GPU if command.startswith(GPU) else CPU if command.startswith(CPU) else None


def test_launchers_go_in_front_of_each_stage_by_kind_and_are_not_recorded(tmp_path):
    plain = commands(_dry(tmp_path / "w", "PROFILE=tiny").stdout)
    _finish(tmp_path / "r")
    args = _records(tmp_path / "r")
    assert len(args) == 16                           # one record per stamp
    launched = _dry(tmp_path / "w", "PROFILE=tiny", f"LAUNCH_GPU={GPU} --gres=gpu:1",
                    f"LAUNCH_CPU={CPU} -c 1", "RUN_TRAIN=torchrun --nproc_per_node=2")
    _assert_no_undefined(launched)
    stages = commands(launched.stdout)
    assert len(stages) == len(plain) == 16          # 12 stages (2 predict shards) and 4 runs
    kinds = {}
    for command in stages:
        module = re.search(r" -m (\S+)", command).group(1)
        kinds.setdefault(module, set()).add(_kind(command))
    assert kinds == {
        "cxrcls.demo_data": {CPU}, "cxrseg.split": {CPU}, "cxrseg.finetune": {GPU},
        "cxrseg.evaluate": {GPU}, "cxrcls.cohort": {CPU}, "cxrcls.cache": {CPU},
        "cxrseg.predict": {GPU}, "cxrseg.gather": {CPU}, "cxrseg.postprocess": {CPU},
        "cxrcls.train": {GPU}, "cxrseg.figures": {CPU}, "cxrstats.report": {CPU}}
    for command in stages:
        if "-m cxrcls.train" in command:
            assert command.startswith(
                f"{GPU} --gres=gpu:1 torchrun --nproc_per_node=2 -m cxrcls.train")
        else:
            assert " python" in command or "/python" in command
    # Same recorded command lines: changing the launcher re-runs nothing.
    again = _finish(tmp_path / "r", "RUN_TRAIN=torchrun --nproc_per_node=2",
                    launcher_args=("-c 1",))
    assert ">> " not in again.stdout and _records(tmp_path / "r") == args


def test_slurm_fragment_runs_each_stage_as_a_job_step(tmp_path):
    stages = commands(_dry(tmp_path / "w", "PROFILE=tiny", "SLURM=1").stdout)
    assert stages and all(c.startswith("srun --exact --ntasks=1 ") for c in stages)
    for command in stages:
        gpu = re.search(r" -m cxr(seg\.(finetune|evaluate|predict)|cls\.train) ", command)
        assert ("--gres=gpu:1" in command) == bool(gpu), command
        # a CPU step takes no GPU (by default Slurm gives a step all of the job's GPUs)
        assert ("--gres=none" in command) == (not gpu), command
        assert "env OMP_NUM_THREADS=" in command
    shards = [c for c in stages if "-m cxrseg.predict" in c]
    assert [re.search(r"--shard (\S+)", c).group(1) for c in shards] == ["0/2", "1/2"]


def test_predict_shards_are_checked_and_one_shard_writes_raw_npy_itself(tmp_path):
    one = commands(_dry(tmp_path / "w", "PROFILE=tiny", "PREDICT_SHARDS=1").stdout)
    predict = [c for c in one if "-m cxrseg.predict" in c]
    assert len(predict) == 1 and "--shard" not in predict[0]
    assert predict[0].endswith(f"--out {tmp_path / 'w'}/masks/raw.npy")
    assert not [c for c in one if "-m cxrseg.gather" in c]
    three = commands(_dry(tmp_path / "w3", "PROFILE=tiny", "PREDICT_SHARDS=3").stdout)
    gather = [c for c in three if "-m cxrseg.gather" in c]
    shards = " ".join(f"{tmp_path / 'w3'}/masks/shards/{k}of3" for k in range(3))
    assert len(gather) == 1 and shards in gather[0]
    for bad in ("0", "x", "02", ""):
        result = run_make("-n", "PROFILE=tiny", f"WORK={tmp_path / 'b'}", f"PREDICT_SHARDS={bad}",
                          check=False)
        assert result.returncode != 0 and "PREDICT_SHARDS" in result.stderr, bad


def test_split_by_patient_gets_its_own_work_folder(tmp_path):
    result = run_make("-n", "--warn-undefined-variables", "PROFILE=tiny", "SPLIT_BY=patient",
                      f"WORK_PATIENT={tmp_path / 'patient'}", f"WORK_IMAGE={tmp_path / 'image'}")
    _assert_no_undefined(result)
    cohort = [c for c in commands(result.stdout) if "-m cxrcls.cohort" in c]
    assert len(cohort) == 1 and "--split-by patient" in cohort[0]
    assert f"--out {tmp_path / 'patient'}/cohort" in cohort[0]
    assert not (tmp_path / "image").exists()
    image = commands(_dry(tmp_path / "w", "PROFILE=tiny").stdout)
    assert "--split-by image" in next(c for c in image if "-m cxrcls.cohort" in c)
    bad = _dry(tmp_path / "w", "SPLIT_BY=study", check=False)
    assert bad.returncode != 0 and "SPLIT_BY=study" in bad.stderr


def test_inputs_with_any_radius_set_the_dilation_list(tmp_path):
    result = _dry(tmp_path / "w", "PROFILE=tiny", "INPUTS=original m100 m0 m15 m30 m50")
    stages = commands(result.stdout)
    post = [c for c in stages if "-m cxrseg.postprocess" in c]
    assert len(post) == 1 and "--dilate 0 15 30 50 100 " in post[0]
    runs = [c for c in stages if "-m cxrcls.train" in c]
    assert len(runs) == 6 * 2
    report = next(c for c in stages if "-m cxrstats.report" in c)
    assert "--settings resnet18_original resnet18_m100 resnet18_m0 resnet18_m15" in report
    default = commands(_dry(tmp_path / "v", "PROFILE=tiny", "INPUTS=original").stdout)
    postprocess = next(c for c in default if "-m cxrseg.postprocess" in c)
    assert "--dilate 15 50 --shape-prior" in postprocess


def _names(stages):
    return [re.search(r" -m (\S+)", c).group(1) for c in stages]


@pytest.mark.parametrize("how", [["ATTRIBUTION=1"], ["attribution"]])
def test_attribution_is_opt_in_and_runs_before_the_report(tmp_path, how):
    launched = _dry(tmp_path / "w", "PROFILE=tiny", f"LAUNCH_GPU={GPU}", *how)
    _assert_no_undefined(launched)
    stages = commands(launched.stdout)
    names = _names(stages)
    assert names.count("cxrcls.attribution") == 1
    at = names.index("cxrcls.attribution")
    assert names.index("cxrstats.report") > at and names[:at].count("cxrcls.train") == 4
    assert stages[at].startswith(f"{GPU} ") and stages[at].endswith(
        f"-m cxrcls.attribution --work {tmp_path / 'w'} --settings resnet18_original resnet18_m50"
        f" --out {tmp_path / 'w'}/results --seed 0 --device auto --precision auto")
    assert "cxrcls.attribution" not in _names(commands(_dry(tmp_path / "w", "PROFILE=tiny").stdout))


def test_tightness_runs_after_the_report(tmp_path):
    result = _dry(tmp_path / "w", "PROFILE=tiny", "tightness", "INPUTS=original m0 m15 m50")
    _assert_no_undefined(result)
    stages = commands(result.stdout)
    names = _names(stages)
    assert names[-1] == "cxrstats.tightness" and names[-2] == "cxrstats.report"
    assert stages[-1].endswith(f"-m cxrstats.tightness --work {tmp_path / 'w'} "
                               f"--out {tmp_path / 'w'}/results")


def test_compare_runs_both_pipelines_then_the_comparison(tmp_path):
    a, b = tmp_path / "image", tmp_path / "patient"
    result = run_make("-n", "--warn-undefined-variables", "PROFILE=tiny", "compare",
                      f"WORK_IMAGE={a}", f"WORK_PATIENT={b}")
    _assert_no_undefined(result)
    stages = commands(result.stdout)
    cohorts = [c for c in stages if "-m cxrcls.cohort" in c]
    assert [f"--out {a}/cohort" in cohorts[0], f"--out {b}/cohort" in cohorts[1]] == [True, True]
    assert "--split-by image" in cohorts[0] and "--split-by patient" in cohorts[1]
    assert stages[-1].endswith(f"-m cxrstats.compare --a {a} --b {b} --out {b}/compare --seed 0")
    # Folders given by hand are only read, never re-run.
    given = run_make("-n", "PROFILE=tiny", "compare", f"A={tmp_path / 'x'}", f"B={tmp_path / 'y'}",
                     f"WORK_IMAGE={a}", f"WORK_PATIENT={b}")
    assert _names(commands(given.stdout)) == ["cxrstats.compare"]


def test_demo_profile_leaves_the_prediction_batch_to_cxrseg_predict(tmp_path):
    # batch 8 is slower per image than batch 1 on CPU; the CLI should choose per device
    predict = [c for c in commands(_dry(tmp_path / "w").stdout) if "-m cxrseg.predict" in c]
    assert len(predict) == 2 and not any("--batch-size" in c for c in predict)


def test_lint_installs_ruff_once_then_checks_with_the_repository_settings(tmp_path):
    result = _dry(tmp_path / "w", "lint")
    assert "ruff check" in result.stdout
    config = (ROOT / "ruff.toml").read_text()
    assert "line-length = 100" in config


def test_setup_without_the_network_stops_saying_how_to_install_elsewhere(tmp_path):
    """A make on a compute node after requirements.txt changed (or was copied anew) installs
    again; when pip cannot (no network), make stops naming make setup on a login node and a folder
    of wheels, and the setup stamp is left as it was."""
    python = tmp_path / "python"
    python.write_text('#!/bin/sh\necho "ERROR: No matching distribution found (no network)" >&2\n'
                      'exit 1\n')
    python.chmod(0o755)
    stamp_time = SETUP.stat().st_mtime_ns
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "SUBMAKE")}
    result = subprocess.run(["make", "--no-print-directory", "-W", "requirements.txt",
                             f"PY={python}", "setup"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert ("error: pip could not install requirements.txt into .venv (above). Without the "
            "network (a cluster's compute node), run make setup where there is one (a login "
            "node, same folder), or from a folder of wheels: PIP_NO_INDEX=1 "
            "PIP_FIND_LINKS=<folder> make setup (docs/cluster.md)") in result.stderr, result.stderr
    assert SETUP.stat().st_mtime_ns == stamp_time


# A stand-in for python3: `-m venv DIR` makes DIR/bin/python a copy of it, whose `-m pip` logs its
# start and end in $PIP_LOG, half a second apart; anything else runs the real Python.
FAKE_PYTHON = r"""#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit; fi
if [ "$1 $2" = "-m pip" ]; then
  echo start >> "$PIP_LOG"; sleep 0.5; echo end >> "$PIP_LOG"; exit
fi
exec {real} "$@"
"""


def test_two_makes_at_once_on_a_fresh_checkout_install_once_one_after_the_other(tmp_path):
    """Jobs submitted together from one fresh checkout: the second make waits for the first's
    install (two pips writing one folder fail or leave it half written), then finds it done and
    installs nothing."""
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON.format(real=sys.executable))
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "SUBMAKE")}
    env["PIP_LOG"] = str(tmp_path / "pip.log")
    venv = tmp_path / "venv"
    makes = [subprocess.Popen(["make", "--no-print-directory", f"VENV={venv}", f"PYTHON={python}",
                               "setup"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [make.communicate(timeout=60)[0] for make in makes]
    assert [make.returncode for make in makes] == [0, 0], outputs
    assert (tmp_path / "pip.log").read_text().split() == ["start", "end"] * 2, outputs
    assert (venv / ".installed").is_file()


def test_two_dry_runs_at_once_each_write_the_generated_settings_whole(tmp_path):
    """A dry run takes no lock but writes WORK/.make/env.mk: two at once (each slowed down while
    writing it) must not write one temporary file, which the first renames under the second."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ncase "$1" in (profiles/module_deps.py) sleep 1;; esac\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    work = tmp_path / "w"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "SUBMAKE")}
    makes = [subprocess.Popen(["make", "--no-print-directory", "-n", f"-o{SETUP.relative_to(ROOT)}",
                               f"PY={python}", "PROFILE=tiny", f"WORK={work}"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [make.communicate(timeout=120)[0] for make in makes]
    assert [make.returncode for make in makes] == [0, 0], outputs
    assert not any("cannot stat" in output for output in outputs), outputs
    assert [p.name for p in (work / ".make").iterdir()] == ["env.mk"]
    assert (work / ".make" / "env.mk").read_text().startswith("ENV_LOADED := 1\n")


def test_a_finished_work_folder_is_up_to_date_and_equal_masks_retrain_nothing(tmp_path):
    """A finished folder (stand-in stages): `make -q` says up to date; a post-processing that
    re-ran with the same masks (checksums unchanged) re-runs the figures and report, no training;
    a changed mask re-trains the runs that read it."""
    work = tmp_path / "w"
    _finish(work)
    report = str(work / "results/.done-report")
    assert run_make("-q", f"WORK={work}", "PROFILE=tiny", report, check=False).returncode == 0
    now = time.time()
    os.utime(work / "masks/.done-postprocess", (now + 100, now + 100))
    again = _names(commands(run_make("-n", f"WORK={work}", "PROFILE=tiny").stdout))
    assert again == ["cxrseg.figures", "cxrstats.report"]
    os.utime(work / "masks/.sum-m50", (now + 101, now + 101))
    changed = commands(run_make("-n", f"WORK={work}", "PROFILE=tiny").stdout)
    assert [c for c in changed if "-m cxrcls.train" in c and "--train-input m50" in c]
    assert not [c for c in changed if "--train-input original" in c]


def test_a_dry_run_with_another_value_shows_the_stage_and_changes_nothing(tmp_path):
    """`make -n` (and -q) with a changed *_ARGS lists the stage and what follows, but records
    nothing: the next real make with the recorded values finds the folder up to date."""
    work = tmp_path / "w"
    _finish(work)
    recorded = _records(work)
    base = ["PROFILE=tiny", f"WORK={work}"]
    report = str(work / "results/.done-report")
    assert run_make("-q", *base, report, check=False).returncode == 0
    changed = _names(commands(_dry(work, "PROFILE=tiny", "FINETUNE_ARGS=--epochs 2").stdout))
    assert changed[0] == "cxrseg.finetune" and "cxrstats.report" in changed
    assert "cxrcls.demo_data" not in changed and "cxrcls.cohort" not in changed
    assert run_make("-q", *base, "FINETUNE_ARGS=--epochs 2", report, check=False).returncode != 0
    assert _records(work) == recorded
    assert run_make("-q", *base, report, check=False).returncode == 0


EPOCHS_2 = "TRAIN_ARGS=--weights none --image-size 32 --epochs 2 --batch-size 8 --lr 1e-3"


def _trained(dry_run_output) -> list[str]:
    """The training runs a `make -n` lists, as <setting>/split<k>, and whether each resumes."""
    return [re.search(r"--out \S*/runs/(\S+) ", c).group(1)
            + (" resumed" if "--resume" in c else "")
            for c in commands(dry_run_output) if "-m cxrcls.train" in c]


def test_a_change_interrupted_half_way_re_runs_only_the_stages_it_reached(tmp_path):
    """TRAIN_ARGS changed, and the make stopped in its second training run (the first re-trained):
    with the old value again only those two runs train again, the runs it never reached are kept
    (their records still hold the old command line); with the new value, the first is kept."""
    work = tmp_path / "w"
    _finish(work)
    failed = _finish(work, EPOCHS_2, env={"FAKE_FAIL_MATCH": "resnet18_original/split1"},
                     check=False)
    assert failed.returncode != 0
    assert [line[3].split("--out ")[1].split()[0] for line in _fake_log(work)] == \
        [str(work / f"runs/resnet18_original/split{k}") for k in (0, 1)]
    old = _dry(work, "PROFILE=tiny").stdout
    assert _trained(old) == ["resnet18_original/split0", "resnet18_original/split1"]
    assert _names(commands(old)) == ["cxrcls.train"] * 2 + ["cxrstats.report"]
    assert _trained(_dry(work, "PROFILE=tiny", EPOCHS_2).stdout) == [
        "resnet18_original/split1", "resnet18_m50/split0", "resnet18_m50/split1"]


def test_an_interrupted_run_resumes_only_under_the_command_line_it_started_with(tmp_path):
    """A run stopped half way (no stamp, its record written when it started, a fresh last.pt)
    continues with --resume under the same command line, and starts afresh under another."""
    work = tmp_path / "w"
    _finish(work)
    run = work / "runs/resnet18_m50/split1"
    (run / ".done-train").unlink()
    (run / "last.pt").write_bytes(b"")
    later = time.time() + 100
    os.utime(run / "last.pt", (later, later))
    assert _trained(_dry(work, "PROFILE=tiny").stdout) == ["resnet18_m50/split1 resumed"]
    assert _trained(_dry(work, "PROFILE=tiny", EPOCHS_2).stdout) == [
        f"resnet18_{i}/split{k}" for i in ("original", "m50") for k in (0, 1)]


def test_dilate_follows_inputs_and_is_refused_on_the_command_line(tmp_path):
    result = _dry(tmp_path / "w", "PROFILE=tiny", "DILATE=15", check=False)
    _refused(result, "DILATE=15: Make sets the dilation radii from INPUTS",
             'add m<r> to INPUTS (e.g. INPUTS="original m15 m50 m30")')
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("mask", ["changed", "equal"])
def test_a_mask_the_post_processing_changes_retrains_its_runs_in_the_same_make(tmp_path, mask):
    """A finished folder whose post-processing must re-run (its stamp older than the prediction's):
    when the stand-in post-processing writes another masks/m50.npy, the same `make reproduce`
    re-trains the runs on m50 (its second make reads the checksums afresh), never those on
    original; when it writes the same mask, no run re-trains."""
    work = tmp_path / "w"
    _finish(work)
    stamps = ["data/.done-data", "seg/.done-split", "seg/.done-finetune", "seg/.done-evaluate",
              "cohort/.done-cohort", "cache/.done-cache", "masks/shards/0of2/.done-predict",
              "masks/shards/1of2/.done-predict", "masks/.done-postprocess", "masks/.sum-m50",
              "masks/.done-predict"]
    stamps += [f"runs/resnet18_{i}/split{k}/.done-train"
               for i in ("original", "m50") for k in (0, 1)]
    stamps += ["results/figures/.done-segfigures", "results/.done-report"]
    (work / "masks/m50.npy").write_bytes(b"old")
    (work / "masks/.sum-m50").write_text(hashlib.md5(b"old").hexdigest() + "  -\n")
    now = time.time() + 1
    for n, name in enumerate(stamps):              # the prediction newer than the post-processing
        os.utime(work / name, (now + n / 10, now + n / 10))
    work.with_name(work.name + ".log").unlink()
    launcher = tmp_path / "post-stage"             # its new mask newer than every stamp above
    launcher.write_text(FAKE_LAUNCHER + 'case "$*" in *cxrseg.postprocess*) sleep 3; '
                        f'printf {"new" if mask == "changed" else "old"} '
                        '> "$FAKE_WORK/masks/m50.npy";; esac\n')
    launcher.chmod(0o755)
    run_make("reproduce", "PROFILE=tiny", f"WORK={work}", f"LAUNCH_CPU={launcher}",
             f"LAUNCH_GPU={launcher}", env={"FAKE_WORK": str(work)})
    ran = [line[3] for line in _fake_log(work)]
    assert any("cxrseg.postprocess" in c for c in ran), ran
    trained = [c for c in ran if "-m cxrcls.train" in c]
    assert len(trained) == (2 if mask == "changed" else 0), ran
    assert all("--train-input m50" in c for c in trained), ran
    assert "cxrstats.report" in ran[-1]


def _stand_in(tmp_path, stage, writes):
    """A stand-in launcher whose stage `stage` (a module name) runs the shell line `writes`."""
    launcher = tmp_path / "stand-in"
    launcher.write_text(FAKE_LAUNCHER + f'case "$*" in *" -m {stage} "*) {writes};; esac\n')
    launcher.chmod(0o755)
    return [f"LAUNCH_CPU={launcher}", f"LAUNCH_GPU={launcher}"]


@pytest.mark.parametrize("images", ["same", "other"])
def test_new_splits_retrain_every_run_and_re_segment_only_other_images(tmp_path, images):
    """SPLITS changed on a finished folder: one `make reproduce` re-makes the cohort and re-trains
    every run on the new splits; the cache, the prediction and the post-processing re-run only
    when the cohort's image list changed (cohort/.sum-images), and then in that same make. The
    next make runs nothing."""
    work = tmp_path / "w"
    _finish(work)
    work.with_name(work.name + ".log").unlink()
    new_list = "image,Mass\\nb.png,1\\n" if images == "other" else "image,Mass\\na.png,1\\n"
    launcher = _stand_in(tmp_path, "cxrcls.cohort",
                         f'printf "{new_list}" > "$FAKE_WORK/cohort/cohort.csv"')
    base = ["reproduce", "PROFILE=tiny", f"WORK={work}", "SPLITS=3", *launcher]
    run_make(*base, env={"FAKE_WORK": str(work)})
    ran = _names([line[3] for line in _fake_log(work)])
    runs = ["cxrcls.train"] * 6
    if images == "same":
        assert ran == ["cxrcls.cohort", *runs, "cxrstats.report"], ran
    else:
        assert ran[:6] == ["cxrcls.cohort", "cxrcls.cache", "cxrseg.predict", "cxrseg.predict",
                           "cxrseg.gather", "cxrseg.postprocess"], ran
        assert sorted(ran[6:]) == sorted([*runs, "cxrseg.figures", "cxrstats.report"]), ran
    assert ">> " not in run_make(*base, env={"FAKE_WORK": str(work)}).stdout


def test_a_cohort_checksum_lost_is_made_again_and_re_runs_nothing(tmp_path):
    """A finished folder without cohort/.sum-images (deleted, or made before Make kept it): the
    checksum is made again, dated as the cohort's stamp, and the cache is not re-made."""
    work = tmp_path / "w"
    _finish(work)
    (work / "cohort/.sum-images").unlink()
    assert ">> " not in _finish(work).stdout
    assert (work / "cohort/.sum-images").stat().st_mtime_ns == \
        (work / "cohort/.done-cohort").stat().st_mtime_ns


def test_more_demo_images_keep_the_segmenter_when_its_pairs_are_the_same(tmp_path):
    """DEMO_N_CLS changed: the data stage runs again, but its segmentation pairs are the same bytes
    (data/.sum-seg unchanged), so the segmenter is neither split, fine-tuned nor evaluated again;
    DEMO_N_SEG changes the pairs and re-makes the segmenter in the same make."""
    work = tmp_path / "w"
    _finish(work)
    _finish(work, "DEMO_N_CLS=50")
    ran = _names([line[3] for line in _fake_log(work)])
    assert ran[:3] == ["cxrcls.demo_data", "cxrcls.cohort", "cxrcls.cache"], ran
    assert not {"cxrseg.split", "cxrseg.finetune", "cxrseg.evaluate"} & set(ran), ran
    work.with_name(work.name + ".log").unlink()
    launcher = _stand_in(tmp_path, "cxrcls.demo_data",
                         'printf new > "$FAKE_WORK/data/seg/masks/s.png"')
    run_make("reproduce", "PROFILE=tiny", f"WORK={work}", "DEMO_N_CLS=50", "DEMO_N_SEG=20",
             *launcher, env={"FAKE_WORK": str(work)})
    ran = _names([line[3] for line in _fake_log(work)])
    assert ran[0] == "cxrcls.demo_data", ran
    assert {"cxrseg.split", "cxrseg.finetune", "cxrseg.evaluate"} <= set(ran), ran


def test_gpu_slot_launcher_gives_each_command_its_own_gpu_slot(tmp_path):
    """Three commands at once on two GPUs with one slot each: never two on one GPU at a time."""
    script = ROOT / "profiles" / "gpu_slot.sh"
    job = ('echo "$CUDA_VISIBLE_DEVICES $OMP_NUM_THREADS $(date +%s.%N)" > "$0.start"; sleep 0.6; '
           'date +%s.%N > "$0.end"')
    env = {**os.environ, "GPU_IDS": "0 1", "GPU_THREADS": "3", "GPU_LOCK_DIR": str(tmp_path)}
    procs = [subprocess.Popen([str(script), "bash", "-c", job, str(tmp_path / f"job{i}")], env=env)
             for i in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    spans = []
    for i in range(3):
        gpu, threads, start = (tmp_path / f"job{i}.start").read_text().split()
        end = float((tmp_path / f"job{i}.end").read_text())
        assert gpu in ("0", "1") and threads == "3"
        spans.append((gpu, float(start), end))
    for a in range(3):
        for b in range(a + 1, 3):
            (ga, sa, ea), (gb, sb, eb) = spans[a], spans[b]
            assert ga != gb or ea <= sb or eb <= sa, spans        # same GPU: one after the other


def _fake_nvidia_smi(folder):
    """A stand-in nvidia-smi that lists four GPUs, 0 to 3 (every GPU of the machine)."""
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n3\\n'\n")
    smi.chmod(0o755)
    return folder


@pytest.mark.parametrize("visible, allowed", [("2,3", {"2", "3"}), ("1", {"1"}),
                                              ("GPU-1a2b", {"GPU-1a2b"})])
def test_gpu_slot_launcher_keeps_to_the_gpus_cuda_visible_devices_allows(tmp_path, visible,
                                                                         allowed):
    """A scheduler (Slurm sets CUDA_VISIBLE_DEVICES to a job's GPUs) or a user who keeps off
    some GPUs: without GPU_IDS the commands run on those GPUs only, never on others that
    nvidia-smi lists."""
    bin_dir = _fake_nvidia_smi(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": visible,
           "GPU_LOCK_DIR": str(tmp_path)}
    env.pop("GPU_IDS", None)
    job = 'echo "$CUDA_VISIBLE_DEVICES" > "$0"; sleep 0.3'
    procs = [subprocess.Popen([str(ROOT / "profiles" / "gpu_slot.sh"), "bash", "-c", job,
                               str(tmp_path / f"job{i}")], env=env) for i in range(3)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    used = {(tmp_path / f"job{i}").read_text().strip() for i in range(3)}
    assert used == allowed, used


def test_gpu_slot_launchers_of_two_slurm_jobs_do_not_wait_for_each_other(tmp_path):
    """Two Slurm jobs on one node, each given its own GPU, which each sees as GPU 0
    (CUDA_VISIBLE_DEVICES=0): their commands run side by side; within one job they take turns."""
    job = 'date +%s.%N > "$0.start"; sleep 0.6; date +%s.%N > "$0.end"'

    def spans(job_ids):
        procs = []
        for i, job_id in enumerate(job_ids):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "GPU_LOCK_DIR": str(tmp_path),
                   "SLURM_JOB_ID": job_id}
            env.pop("GPU_IDS", None)
            out = tmp_path / f"{'-'.join(job_ids)}.{i}"
            procs.append((out, subprocess.Popen([str(ROOT / "profiles" / "gpu_slot.sh"), "bash",
                                                 "-c", job, str(out)], env=env)))
        assert all(p.wait(timeout=60) == 0 for _, p in procs)
        return [(float(out.with_suffix(out.suffix + ".start").read_text()),
                 float(out.with_suffix(out.suffix + ".end").read_text())) for out, _ in procs]

    (s0, e0), (s1, e1) = spans(["11", "12"])
    assert s1 < e0 and s0 < e1                                   # side by side
    (s0, e0), (s1, e1) = spans(["13", "13"])
    assert e0 <= s1 or e1 <= s0                                  # one after the other


def test_gpu_slot_launcher_refuses_a_cuda_visible_devices_of_no_gpu(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "GPU_LOCK_DIR": str(tmp_path)}
    env.pop("GPU_IDS", None)
    ran = tmp_path / "ran"
    result = subprocess.run([str(ROOT / "profiles" / "gpu_slot.sh"), "touch", str(ran)], env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2 and "CUDA_VISIBLE_DEVICES=-1: " in result.stderr, result.stderr
    assert not ran.exists()


# ---------------------------------------------------------------- checks when Make starts
def _refused(result, *messages):
    """Make stopped at parse time with each message and ran (and printed) no stage."""
    assert result.returncode != 0, result.stdout[-2000:]
    for message in messages:
        assert message in result.stderr, result.stderr
    assert commands(result.stdout) == [] and ">> " not in result.stdout


@pytest.mark.parametrize("variable, value, word", [
    ("INPUTS", "original m50 original", "original"),
    ("INPUTS", "original m0 m15 m0", "m0"),
    ("ARCHS", "resnet18 densenet121 resnet18", "resnet18"),
])
def test_a_backbone_or_input_named_twice_stops_make(tmp_path, variable, value, word):
    result = _dry(tmp_path / "w", "PROFILE=tiny", f"{variable}={value}", check=False)
    _refused(result, f"{variable}={value}: {word} given more than once")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("variable", ["ARCHS", "INPUTS", "SPLITS"])
def test_no_backbone_input_or_split_stops_make(tmp_path, variable):
    result = _dry(tmp_path / "w", "PROFILE=tiny", f"{variable}=", check=False)
    _refused(result, f"{variable} is empty: name at least one (the profile's: profiles/tiny.mk)")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("variable, value, bad, choices", [
    ("INPUTS", "original M15", "M15", "choose among original, overlay and m<radius in pixels>"),
    ("INPUTS", "Original m50", "Original", "choose among original, overlay"),
    ("INPUTS", "overlays m50", "overlays", "choose among original, overlay"),
    ("ARCHS", "densenet", "densenet", "choose among resnet50 densenet121 resnet18"),
    ("ARCHS", "resnet18 ResNet50", "ResNet50", "choose among resnet50 densenet121 resnet18"),
])
def test_every_input_and_backbone_is_checked_before_any_stage(tmp_path, variable, value, bad,
                                                               choices):
    """Not only the values starting with m: a wrong input or backbone would fail only when its
    training starts, after the segmentation."""
    for goal in ([], ["clean-work"]):
        result = _dry(tmp_path / "w", "PROFILE=tiny", f"{variable}={value}", *goal, check=False)
        _refused(result, f"{variable}={value}: {bad}: not ", choices)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("profile", ["Paper", "pipeline", "user", "demo tiny", "nope"])
def test_a_profile_that_does_not_exist_is_named_with_the_ones_that_do(tmp_path, profile):
    result = _dry(tmp_path / "w", f"PROFILE={profile}", check=False)
    _refused(result, f"PROFILE={profile}: no such profile; choose one of demo paper tiny")
    assert "No rule to make target" not in result.stderr


@pytest.mark.parametrize("setting", ["GPU_SLOTS=0", "GPU_SLOTS=-1", "GPU_SLOTS=abc",
                                     "GPU_THREADS=0", "GPU_IDS=0,1"])
def test_make_checks_the_gpu_slot_settings_before_any_stage(tmp_path, setting):
    result = _dry(tmp_path / "w", "PROFILE=tiny", "LAUNCH_GPU=profiles/gpu_slot.sh", setting,
                  check=False)
    _refused(result, f"{setting}: ")
    assert not (tmp_path / "w").exists()
    fine = _dry(tmp_path / "v", "PROFILE=tiny", "GPU_SLOTS=2", "GPU_THREADS=3", "GPU_IDS=0 1")
    assert any("-m cxrcls.train" in c for c in commands(fine.stdout))


@pytest.mark.parametrize("setting", ["GPU_SLOTS=0", "GPU_SLOTS=-1", "GPU_SLOTS=abc",
                                     "GPU_SLOTS=01", "GPU_THREADS=0", "GPU_THREADS=x",
                                     "GPU_IDS=0,1", "GPU_IDS=0 ../x"])
def test_gpu_slot_launcher_refuses_a_bad_setting_at_once(tmp_path, setting):
    name, _, value = setting.partition("=")
    env = {**os.environ, name: value, "GPU_LOCK_DIR": str(tmp_path)}
    ran = tmp_path / "ran"
    result = subprocess.run([str(ROOT / "profiles" / "gpu_slot.sh"), "touch", str(ran)], env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2 and f"{name}={value}: " in result.stderr, result.stderr
    assert "unbound variable" not in result.stderr and "division" not in result.stderr
    assert not ran.exists()


@pytest.mark.parametrize("goal, variable", [("reproduce", "WORK"), ("clean-work", "WORK"),
                                            ("compare", "A"), ("compare", "B")])
@pytest.mark.parametrize("name", ["with space", "with:colon"])
def test_a_folder_make_cannot_quote_is_refused_up_front(tmp_path, goal, variable, name):
    before = sorted(p.name for p in ROOT.iterdir())
    (tmp_path / name).mkdir()
    folder = tmp_path / name / "w"
    result = run_make("-n", "PROFILE=tiny", goal, f"{variable}={folder}", check=False)
    _refused(result, f'{variable}="{folder}": give one folder path without spaces')
    assert sorted(p.name for p in ROOT.iterdir()) == before        # no stray folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [name] and not folder.exists()
    real = run_make(goal, "PROFILE=tiny", f"{variable}={folder}", check=False)   # not a dry run
    _refused(real, f'{variable}="{folder}"')
    assert sorted(p.name for p in ROOT.iterdir()) == before and not folder.exists()


# ---------------------------------------------------------------- flags Make sets itself
def test_cohort_args_with_split_by_stops_make_naming_split_by(tmp_path):
    for args in ("--split-by patient", "--split-by=patient"):
        result = _dry(tmp_path / "w", "PROFILE=tiny", "reproduce", f"COHORT_ARGS={args}",
                      check=False)
        _refused(result, "COHORT_ARGS holds --split-by, which Make sets from SPLIT_BY: use "
                         "SPLIT_BY=patient, not --split-by in COHORT_ARGS")
        assert not (tmp_path / "w").exists()


# One case per stage's *_ARGS (DEMO_FLAGS for the generated data): a flag Make sets in that stage.
FLAG_CASES = [
    ("DEMO_FLAGS", "--spurious-cue --n-cls 10",
     "DEMO_FLAGS holds --n-cls, which Make sets from DEMO_N_CLS: use DEMO_N_CLS=10, not --n-cls in"
     " DEMO_FLAGS"),
    ("DEMO_FLAGS", "--size=32", "use DEMO_SIZE=32, not --size in DEMO_FLAGS"),
    ("FINETUNE_ARGS", "--epochs 1 --seed 3", "use SEED=3, not --seed in FINETUNE_ARGS"),
    ("FINETUNE_ARGS", "--resume", "FINETUNE_ARGS holds --resume, which Make sets from WORK: remove "
                                  "--resume from FINETUNE_ARGS"),
    ("FINETUNE_ARGS", "--checkpoint other.pt", "FINETUNE_ARGS holds --checkpoint, which Make sets "
                                               "from the profile (profiles/tiny.mk): remove"),
    ("EVALUATE_ARGS", "--device=cpu", "use DEVICE=cpu, not --device in EVALUATE_ARGS"),
    ("FINETUNE_ARGS", "--extent full", "FINETUNE_ARGS holds --extent, which Make sets from "
                                       "EXTENT: use EXTENT=full, not --extent in FINETUNE_ARGS"),
    ("PREDICT_ARGS", "--extent=full", "use EXTENT=full, not --extent in PREDICT_ARGS"),
    ("EVALUATE_ARGS", "--extent full", "use EXTENT=full, not --extent in EVALUATE_ARGS"),
    ("TRAIN_ARGS", "--precision fp32", "use PRECISION=fp32, not --precision in TRAIN_ARGS"),
    ("PREDICT_ARGS", "--precision=bf16", "use PRECISION=bf16, not --precision in PREDICT_ARGS"),
    ("EVALUATE_ARGS", "--checkpoint other.pt", "EVALUATE_ARGS holds --checkpoint, which Make sets "
                                               "from WORK"),
    ("COHORT_ARGS", "--splits 3", "use SPLITS=3, not --splits in COHORT_ARGS"),
    ("CACHE_ARGS", "--workers 1 --size 32", "use CACHE_SIZE=32, not --size in CACHE_ARGS"),
    ("PREDICT_ARGS", "--out x.npy", "PREDICT_ARGS holds --out, which Make sets from WORK: remove "
                                    "--out from PREDICT_ARGS"),
    ("PREDICT_ARGS", "--shard 0/2", "which Make sets from PREDICT_SHARDS"),
    ("TRAIN_ARGS", "--epochs 1 --train-input m50", "TRAIN_ARGS holds --train-input, which Make "
                                                   "sets from INPUTS: remove --train-input"),
    ("TRAIN_ARGS", "--resume", "TRAIN_ARGS holds --resume"),
    ("REPORT_ARGS", "--settings resnet18_original", "REPORT_ARGS holds --settings, which Make "
                                                    "sets from ARCHS and INPUTS"),
    ("ATTRIBUTION_ARGS", "--work /elsewhere", "ATTRIBUTION_ARGS holds --work, which Make sets "
                                              "from WORK"),
    ("TIGHTNESS_ARGS", "--out /elsewhere", "TIGHTNESS_ARGS holds --out, which Make sets from WORK"),
    ("COMPARE_ARGS", "--b /elsewhere", "COMPARE_ARGS holds --b, which Make sets from B: use "
                                       "B=/elsewhere, not --b in COMPARE_ARGS"),
    ("COMPARE_ARGS", "--out=/elsewhere", "COMPARE_ARGS holds --out, which Make sets from B"),
]


FLAG_CASES += [
    ("TRAIN_ARGS", "--eval-input original", "TRAIN_ARGS holds --eval-input: Make trains and tests "
                                            "each run on the input INPUTS names"),
    ("TRAIN_ARGS", "--epochs 2 --eval-input=m50", "TRAIN_ARGS holds --eval-input"),
]


@pytest.mark.parametrize("variable, value, message", FLAG_CASES)
def test_a_flag_make_sets_in_a_stage_args_stops_make_before_any_stage(tmp_path, variable, value,
                                                                      message):
    goal = "compare" if variable == "COMPARE_ARGS" else "reproduce"
    a, b = tmp_path / "a", tmp_path / "b"
    result = _dry(tmp_path / "w", "PROFILE=tiny", goal, f"{variable}={value}", f"WORK_IMAGE={a}",
                  f"WORK_PATIENT={b}", check=False)
    _refused(result, message)
    assert not any(p.exists() for p in (tmp_path / "w", a, b))


def test_flags_make_does_not_set_pass_through(tmp_path):
    result = _dry(tmp_path / "w", "PROFILE=tiny", "COHORT_ARGS=--per-label 5 --no-finding=5",
                  "PREDICT_SHARDS=1", "PREDICT_ARGS=--batch-size 4")
    stages = commands(result.stdout)
    assert "--per-label 5 --no-finding=5" in next(c for c in stages if "-m cxrcls.cohort" in c)
    assert "--batch-size 4" in next(c for c in stages if "-m cxrseg.predict" in c)


# ---------------------------------------------------------------- one make per work folder
FAKE_LAUNCHER = r"""#!/usr/bin/env bash
# Stands in for a stage: records start, end, whether the work folder's lock is held, the command;
# runs nothing. With FAKE_DROP_START it deletes the stage's start file, as a second make once did.
lock=free; flock -n "$FAKE_WORK/.lock" true || lock=held
[ -z "${FAKE_DROP_START:-}" ] || find "$FAKE_WORK" -name '.done-*.start' -delete
start=$EPOCHREALTIME; sleep "${FAKE_SECONDS:-0}"
printf '%s\t%s\t%s\t%s\n' "$start" "$EPOCHREALTIME" "$lock" "$*" >> "$FAKE_WORK.log"
# FAKE_FAIL_MATCH: a stage whose command line holds it fails (after it was logged).
case "$*" in (*"${FAKE_FAIL_MATCH:-@none@}"*) exit 1;; esac
"""


def _fake_launcher(tmp_path, *launcher_args):
    path = tmp_path / "fake-stage"
    path.write_text(FAKE_LAUNCHER)
    path.chmod(0o755)
    extra = "".join(f" {a}" for a in launcher_args)
    return [f"LAUNCH_CPU={path}{extra}", f"LAUNCH_GPU={path}{extra}"]


def _fake_log(work):
    """(start, end, lock held or free, command) per stage the stand-in launcher saw."""
    log = work.with_name(work.name + ".log")
    return [line.split("\t") for line in log.read_text().splitlines()]


@pytest.mark.parametrize("goal", ["reproduce", "tightness", "clean-work", "compare"])
def test_a_second_make_on_a_locked_work_folder_stops_at_once_and_touches_nothing(tmp_path, goal):
    work = tmp_path / "w"
    work.mkdir()
    folders = [f"WORK={work}"] if goal != "compare" else [f"A={tmp_path / 'a'}", f"B={work}"]
    with open(work / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        result = run_make(goal, "PROFILE=tiny", *folders, check=False, timeout=120)
        seconds = time.monotonic() - started
    assert result.returncode != 0
    assert f"error: {work}: another make is running there" in result.stderr, result.stderr
    assert seconds < 30 and ">> " not in result.stdout
    assert [p.name for p in work.iterdir()] == [".lock"] and not (tmp_path / "a").exists()


def test_make_compare_reads_a_under_its_lock_and_stops_while_a_make_holds_it(tmp_path):
    """The comparison holds A's lock (shared) from its make's start to the end of the stage: a make
    running on A (holding A/.lock) stops it at once, naming A, before anything is written to B;
    while the comparison runs, a make on A could not take A's lock; afterwards it is free."""
    a, b = tmp_path / "a", tmp_path / "b"
    for work in (a, b):
        (work / "results").mkdir(parents=True)
        (work / "results" / "auroc_by_split.csv").write_text("setting,split,label,auroc\n")
    compare = ["compare", "PROFILE=tiny", f"A={a}", f"B={b}"]
    with open(a / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        result = run_make(*compare, check=False, timeout=120)
        seconds = time.monotonic() - started
    assert result.returncode != 0 and seconds < 30 and ">> " not in result.stdout
    assert f"error: {a}: another make is running there" in result.stderr, result.stderr
    assert not (b / "compare").exists()
    run_make(*compare, *_fake_launcher(tmp_path), env={"FAKE_WORK": str(a)})
    assert [(line[2], line[3].split()[2]) for line in _fake_log(a)] == [("held",
                                                                         "cxrstats.compare")]
    with open(a / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("goal", ["reproduce", "clean-work"])
@pytest.mark.parametrize("errno_text, code", [("Function not implemented", 65),
                                              ("No locks available", 71)])
def test_a_work_folder_whose_file_system_cannot_lock_stops_make_saying_so(tmp_path, goal,
                                                                         errno_text, code):
    """flock fails as on Lustre mounted without -o flock, or NFS without its lock service: make
    stops before any stage (or deletion), naming the folder, the cause and where to read more."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "flock").write_text(f'#!/bin/sh\necho "flock: $4: {errno_text}" >&2\nexit {code}\n')
    (bin_dir / "flock").chmod(0o755)
    work = tmp_path / "w"
    (work / "data").mkdir(parents=True)
    (work / "data" / ".cxr-lungmask").write_text("")
    result = run_make(goal, "PROFILE=tiny", f"WORK={work}", *_fake_launcher(tmp_path),
                      check=False, env={"FAKE_WORK": str(work),
                                        "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode != 0 and ">> " not in result.stdout
    assert f"flock: {work}/.lock: {errno_text}" in result.stderr
    assert (f"error: {work}: its file system cannot lock {work}/.lock (flock's message above), "
            "so nothing ran") in result.stderr, result.stderr
    assert 'docs/cluster.md, "The work folder\'s lock"' in result.stderr
    assert {p.name for p in work.iterdir()} - {".lock"} == {"data"}   # nothing deleted
    assert not work.with_name("w.log").exists()              # the stand-in stage never ran


@pytest.mark.parametrize("flags", [[], ["-j2"], ["-k"]])
def test_a_plain_make_takes_the_lock_records_its_commands_and_then_runs_nothing(tmp_path, flags):
    """make as a user types it (no --no-print-directory): a real run, not a dry run. It holds the
    work folder's lock while a stage runs, records the command lines, and a second make runs
    nothing (a long option in MAKEFLAGS, e.g. the Makefile's own --no-builtin-rules, once read as
    -n: no lock, nothing recorded, every stage run again each time)."""
    work = tmp_path / "w"
    target = str(work / "data" / ".done-data")
    launch = [*_fake_launcher(tmp_path), "PROFILE=tiny", f"WORK={work}", target]
    env = {"FAKE_WORK": str(work)}
    _fake_outputs(work)
    run_make(*flags, *launch, env=env, quiet=False)
    assert [line[2] for line in _fake_log(work)] == ["held"]
    assert (work / "data/.done-data.args").read_text().strip().startswith("cxrcls.demo_data")
    again = run_make(*flags, *launch, env=env, quiet=False)
    assert len(_fake_log(work)) == 1 and ">> " not in again.stdout, again.stdout


def test_stages_run_under_the_lock_and_keep_make_j_parallelism(tmp_path):
    """Two training runs with -j2 overlap; every stage holds the work folder's lock, which is free
    again when make ends."""
    work = tmp_path / "w"
    runs = [str(work / f"runs/resnet18_original/split{k}/.done-train") for k in (0, 1)]
    _fake_outputs(work)
    result = run_make("-j2", "PROFILE=tiny", f"WORK={work}", *_fake_launcher(tmp_path), *runs,
                      env={"FAKE_WORK": str(work), "FAKE_SECONDS": "1"})
    assert "jobserver" not in result.stderr, result.stderr
    log = _fake_log(work)
    assert [line[2] for line in log] == ["held"] * 5            # data, cohort, cache, two runs
    (s0, e0), (s1, e1) = [(float(line[0]), float(line[1])) for line in log if "cxrcls.train" in
                          line[3]]
    assert s1 < e0 and s0 < e1, log                             # side by side
    with open(work / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("python", ["missing", "old"])
def test_a_python_that_cannot_run_the_checks_stops_make_before_any_stage(tmp_path, python):
    """PYTHON runs Make's checks when it starts (here: of a WORK holding a file of the user's);
    one that is not there, or too old (a compute node without the login node's Python), skipped
    them unseen, and the stage ran beside the user's file."""
    path = tmp_path / "python3"
    if python == "old":
        path.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "Python 3.6.8"; exit 0; }\n'
                        'echo "SyntaxError: future feature annotations is not defined" >&2\n'
                        'exit 1\n')
        path.chmod(0o755)
    work = tmp_path / "w"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    result = run_make(str(work / "data/.done-data"), "PROFILE=tiny", f"WORK={work}",
                      f"PYTHON={path}", *_fake_launcher(tmp_path), check=False,
                      env={"FAKE_WORK": str(work)})
    version = "Python 3.6.8" if python == "old" else "does not run"
    _refused(result, f"PYTHON={path}: {version}; Make runs its checks with PYTHON when it starts, "
             "and they need Python 3.8 or later. Give PYTHON=<a python3.11>")
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    assert not work.with_name("w.log").exists()              # the stand-in stage never ran
    assert run_make("-n", "test", f"PYTHON={path}").returncode == 0   # .venv exists: not needed


@pytest.mark.parametrize("goal", ["reproduce", "tightness", "segmenter", "data/.done-data"])
def test_a_work_folder_holding_files_of_the_user_is_refused_before_any_stage(tmp_path, goal):
    """The rule clean-work asks (cxrstats/foundation/ownership.py), asked before stage folders are
    written beside the user's files: so a work folder is always one clean-work can delete."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    target = str(work / goal) if "/" in goal else goal
    result = run_make(target, "PROFILE=tiny", f"WORK={work}", *_fake_launcher(tmp_path),
                      check=False, env={"FAKE_WORK": str(work)})
    _refused(result, f"WORK={work}: holds 'notes.txt', which this toolkit did not write",
             "Give WORK a new or empty folder")
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    assert not work.with_name("w.log").exists()              # the stand-in stage never ran


def test_a_work_folder_of_the_toolkit_or_a_link_to_one_is_accepted(tmp_path):
    real = tmp_path / "real"
    (real / "seg").mkdir(parents=True)
    (real / "seg" / ".cxr-lungmask").write_text("")          # a stage's folder
    (real / "seg" / "best.pt").write_text("x")
    (real / ".done-x").write_text("")
    work = tmp_path / "w"
    work.symlink_to(real)                                    # how a path with spaces becomes WORK
    _fake_outputs(work)
    run_make("PROFILE=tiny", f"WORK={work}", *_fake_launcher(tmp_path),
             str(work / "data/.done-data"), env={"FAKE_WORK": str(work)})
    assert (real / "data" / ".done-data").is_file()


def test_stage_times_shows_an_unknown_wall_time_as_a_question_mark(tmp_path):
    work = tmp_path / "w"
    _fake_outputs(work)
    run_make("PROFILE=tiny", f"WORK={work}", *_fake_launcher(tmp_path),
             str(work / "data/.done-data"), env={"FAKE_WORK": str(work), "FAKE_DROP_START": "1"})
    assert (work / "data/.done-data").read_text().split("\t")[1] == "?"
    run = "runs/resnet18_original/split0"
    stamps = {"cohort/.done-cohort": "cohort\t1.5\t1.0\n",
              f"{run}/.done-train": f"train {run[5:]}\t2.5\t-\n"}
    for name, text in stamps.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    lines = run_make("stage-times", "PROFILE=tiny", f"WORK={work}").stdout.splitlines()
    data = next(line for line in lines if line.split()[0] == "data")
    assert data.split()[1:] == ["?", "-"]
    assert next(line for line in lines if line.split()[0] == "total").split()[1] == "4.0"
    assert any("1 stage(s) without a known wall time" in line for line in lines)


def test_precision_reaches_every_stage_that_runs_a_network_and_a_bad_one_stops_make(tmp_path):
    networks = ("cxrseg.finetune", "cxrseg.evaluate", "cxrseg.predict", "cxrcls.train",
                "cxrcls.attribution")
    for value in ("auto", "fp32"):
        given = [] if value == "auto" else [f"PRECISION={value}"]   # auto is the default
        stages = commands(_dry(tmp_path / value, "PROFILE=tiny", "ATTRIBUTION=1", *given).stdout)
        for command in stages:
            module = re.search(r" -m (\S+)", command).group(1)
            assert (f"--precision {value}" in command) == (module in networks), command
        assert {re.search(r" -m (\S+)", c).group(1) for c in stages} >= set(networks)
    bad = _dry(tmp_path / "bad", "PROFILE=tiny", "PRECISION=fp16", check=False)
    assert bad.returncode != 0 and "PRECISION=fp16: choose one of auto fp32 bf16" in bad.stderr


def test_extent_reaches_the_segmentation_stages_is_recorded_and_a_bad_one_stops_make(tmp_path):
    for value in ("field", "full"):
        given = [] if value == "field" else [f"EXTENT={value}"]   # field is the default
        stages = commands(_dry(tmp_path / "w", "PROFILE=tiny", *given).stdout)
        for command in stages:
            module = re.search(r" -m (\S+)", command).group(1)
            wanted = module in ("cxrseg.finetune", "cxrseg.evaluate", "cxrseg.predict")
            assert (f"--extent {value} " in command) == wanted, command
            assert ("--extent" in command) == wanted, command
        assert sum("-m cxrseg.predict" in c for c in stages) == 2        # both shards
        # the recorded command lines change with it, so fine-tune and what follows run again
        _finish(tmp_path / "w", *given)
        records = _records(tmp_path / "w")
        for stamp in ("seg/.done-finetune", "seg/.done-evaluate",
                      "masks/shards/0of2/.done-predict"):
            assert f"--extent {value} " in records[stamp]
    for bad in ("wide", "field full", ""):
        result = _dry(tmp_path / "bad", "PROFILE=tiny", f"EXTENT={bad}", check=False)
        _refused(result, f"EXTENT={bad}: ", "is not a lung extent: choose field or full")
        assert not (tmp_path / "bad").exists()


def test_a_second_fine_tuning_stage_continues_from_the_first_and_makes_the_segmenter(tmp_path):
    one = [c for c in commands(_dry(tmp_path / "one", "PROFILE=tiny").stdout)
           if "-m cxrseg.finetune" in c]
    assert len(one) == 1 and f"--out {tmp_path / 'one' / 'seg'} " in one[0]
    work = tmp_path / "two"
    result = _dry(work, "PROFILE=tiny", "FINETUNE2_ARGS=--train all --lr 1e-5")
    _assert_no_undefined(result)
    stages = commands(result.stdout)
    first, second = [c for c in stages if "-m cxrseg.finetune" in c]
    assert f"--out {work / 'seg-stage1'} " in first and "--train all" not in first
    assert f"--checkpoint {work / 'seg-stage1' / 'best.pt'} " in second
    assert f"--out {work / 'seg'} " in second and "--train all --lr 1e-5 " in second
    evaluate = next(i for i, c in enumerate(stages) if "-m cxrseg.evaluate" in c)
    assert stages.index(second) < evaluate and f"--checkpoint {work / 'seg' / 'best.pt'} " in \
        stages[evaluate]
    _finish(work, "FINETUNE2_ARGS=--train all --lr 1e-5")
    assert "--train all" in _records(work)["seg/.done-finetune2"]
    # the checkpoint is Make's (the first stage's best.pt): given again, make stops at once
    bad = _dry(tmp_path / "bad", "PROFILE=tiny", "FINETUNE2_ARGS=--checkpoint x.pt", check=False)
    _refused(bad, "FINETUNE2_ARGS holds --checkpoint")
