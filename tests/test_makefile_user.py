"""profiles/user.mk with `make -n` (nothing runs): make weights (and make setup PROFILE=paper), the
Make-time check of the ImageNet weights, make segment and make segmenter, which need none of the
study's data, and the Make-time checks of their folders (IMAGES, SEGMENTER, SEG_DATA). The targets
running for real: tests/test_user_data.py."""
import re

import pytest

from cxrcls.imagenet_files import DEFAULT_DIR, IMAGENET_FILES
from makeutil import HAVE_MAKE, ROOT, SETUP, commands, run_make

pytestmark = [
    pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed"),
    pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (tests never install)"),
]
UNDEFINED = re.compile(r"warning: undefined variable '([^']*)'")


def dry(tmp_path, *args, check=True):
    result = run_make("-n", "--warn-undefined-variables", f"WORK={tmp_path / 'w'}", *args,
                      check=check)
    assert not UNDEFINED.findall(result.stderr), result.stderr
    return result


def paper_data(tmp_path):
    """Fake NIH and RSUA folders and a MedSAM checkpoint file: the paper profile's checks pass."""
    nih = tmp_path / "nih"
    nih.mkdir(exist_ok=True)
    (nih / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n")
    for name in ("images", "masks"):
        (tmp_path / "rsua" / name).mkdir(parents=True, exist_ok=True)
    (tmp_path / "medsam_vit_b.pth").write_bytes(b"")
    return [f"NIH_DIR={nih}", f"RSUA_DIR={tmp_path / 'rsua'}",
            f"MEDSAM_CKPT={tmp_path / 'medsam_vit_b.pth'}"]


def test_make_weights_fetches_the_archs_and_paper_setup_runs_it(tmp_path):
    weights = dry(tmp_path, "weights", "PROFILE=paper", "ARCHS=resnet18").stdout
    assert weights.strip().endswith("-m cxrcls.weights --archs resnet18")
    setup = dry(tmp_path, "setup", "PROFILE=paper").stdout
    assert "-m cxrcls.weights --archs resnet50 densenet121" in setup
    assert "cxrcls.weights" not in dry(tmp_path, "setup", "PROFILE=demo").stdout


def test_paper_profile_stops_before_anything_runs_when_imagenet_weights_are_missing(tmp_path):
    empty = tmp_path / "imagenet"
    empty.mkdir()
    data = paper_data(tmp_path)
    missing = dry(tmp_path, "PROFILE=paper", *data, f"IMAGENET_DIR={empty}", check=False)
    assert missing.returncode != 0
    assert (f"(missing {empty}/resnet50-0676ba61.pth {empty}/densenet121-a639ec97.pth): fetch "
            "them once with `make weights`") in missing.stderr
    # on a cluster whose compute nodes have no network: where to fetch or copy them
    assert ("where there is a network (no stage downloads; on a cluster whose compute nodes have "
            "none, run it on a login node, or copy those files there from a machine that has "
            "them: docs/cluster.md)") in missing.stderr, missing.stderr
    # or the profile's TRAIN_ARGS with random weights
    assert ('or train from random initialisation (not the study\'s setting): '
            'TRAIN_ARGS="--weights none --epochs 30 --batch-size 4 --lr 1e-4"'
            in missing.stderr), missing.stderr
    other = dry(tmp_path, "PROFILE=paper", *data, f"IMAGENET_DIR={empty}",
                "TRAIN_ARGS=--epochs 2 --weights=imagenet", check=False)
    assert 'TRAIN_ARGS="--epochs 2 --weights none"' in other.stderr, other.stderr
    assert "cxrseg.split" not in missing.stdout
    for name in IMAGENET_FILES.values():
        (empty / name).write_bytes(b"")
    present = dry(tmp_path, "PROFILE=paper", *data, f"IMAGENET_DIR={empty}")
    assert any("-m cxrcls.train" in c for c in commands(present.stdout))
    without = dry(tmp_path, "PROFILE=paper", *data, f"IMAGENET_DIR={tmp_path / 'none'}",
                  "TRAIN_ARGS=--weights none --epochs 1")
    assert any("-m cxrcls.train" in c for c in commands(without.stdout))


def test_make_checks_the_exact_files_training_reads_and_passes_it_the_folder(tmp_path):
    folder = tmp_path / "my weights"
    folder.mkdir()
    (folder / "resnet50-11ad3fa6.pth").write_bytes(b"")   # another release: not what training reads
    (folder / IMAGENET_FILES["densenet121"]).write_bytes(b"")
    data = paper_data(tmp_path)
    other = dry(tmp_path, "PROFILE=paper", *data, f"IMAGENET_DIR={folder}", check=False)
    assert other.returncode != 0
    assert f"(missing {folder}/resnet50-0676ba61.pth)" in other.stderr
    # the folder Make checked is the one training and `make weights` read: exported to recipes
    shown = run_make("--eval", "show: ; @echo \"$$IMAGENET_DIR\"", "show", "PROFILE=tiny",
                     f"IMAGENET_DIR={folder}")
    assert shown.stdout.strip() == str(folder)
    default = run_make("--eval", "show: ; @echo \"[$$IMAGENET_DIR]\"", "show", "PROFILE=tiny")
    assert default.stdout.strip() == "[]"   # empty: cxrcls.imagenet_files' default folder
    assert DEFAULT_DIR == ROOT / "weights" / "imagenet"


def test_make_segment_runs_predict_with_the_segmenter_folder_and_needs_no_study_data(tmp_path):
    images = tmp_path / "my cxrs"
    images.mkdir()
    (tmp_path / "w" / "seg").mkdir(parents=True)
    result = dry(tmp_path, "segment", "PROFILE=paper", f"IMAGES={images}", "OUT=my_masks",
                 "SEGMENT_ARGS=--masked")
    predict = [c for c in result.stdout.splitlines() if "-m cxrseg.predict" in c]
    assert len(predict) == 1
    assert predict[0].endswith(f'-m cxrseg.predict --images "{images}" --segmenter '
                               f'"{tmp_path / "w"}/seg" --extent field --erode 5 --out "my_masks" '
                               '--masked --device auto')
    full = dry(tmp_path, "segment", f"IMAGES={images}", "OUT=y", "EXTENT=full")
    assert '--segmenter "' in full.stdout and " --extent full " in full.stdout
    for missing in (["OUT=x"], ["IMAGES=x"]):
        refused = dry(tmp_path, "segment", *missing, check=False)
        assert refused.returncode != 0 and "make segment needs" in refused.stderr


def test_make_segment_erodes_by_erode_as_the_post_processing_does(tmp_path):
    """ERODE (pixels of the profile's cache) reaches cxrseg.predict as the radius of a 512-px side
    that gives as many pixels at CACHE_SIZE; --erode in SEGMENT_ARGS stops Make, naming ERODE."""
    images = tmp_path / "my cxrs"
    images.mkdir()
    (tmp_path / "w" / "seg").mkdir(parents=True)
    folders = [f"IMAGES={images}", "OUT=o"]

    def erode(*args):
        predict = [c for c in dry(tmp_path, "segment", *folders, *args).stdout.splitlines()
                   if "-m cxrseg.predict" in c]
        return re.findall(r" --erode (\S+)", predict[0])

    assert erode() == ["5"] and erode("ERODE=3") == ["3"]
    assert erode("PROFILE=tiny") == ["4"]                   # 1 px at its 64-px cache
    assert erode("PROFILE=tiny", "ERODE=2") == ["12"]
    assert erode("CACHE_SIZE=256", "ERODE=3") == ["5"]      # 3 px at 256, as cxrcls.predict asks
    refused = dry(tmp_path, "segment", *folders, "SEGMENT_ARGS=--masked --erode 3", check=False)
    assert refused.returncode != 0 and "-m cxrseg.predict" not in refused.stdout
    assert ("SEGMENT_ARGS holds --erode, which Make sets from ERODE: use ERODE=3, not --erode in "
            "SEGMENT_ARGS") in refused.stderr, refused.stderr
    for bad in ("ERODE=x", "ERODE=3 CACHE_SIZE=1024"):
        stopped = dry(tmp_path, "segment", *folders, *bad.split(), check=False)
        assert stopped.returncode != 0 and "make segment: no erosion radius for" in stopped.stderr


def test_make_segment_stops_at_once_naming_work_and_segmenter_when_the_segmenter_is_missing(
        tmp_path):
    """After a pipeline run in another WORK, the default SEGMENTER (WORK/seg) is not there: Make
    says to pass WORK= or SEGMENTER=, before cxrseg.predict starts; likewise a missing IMAGES."""
    images = tmp_path / "my cxrs"
    images.mkdir()
    ours = tmp_path / "elsewhere" / "seg"
    ours.mkdir(parents=True)
    default = dry(tmp_path, "segment", "PROFILE=paper", f"IMAGES={images}", "OUT=o", check=False)
    assert default.returncode != 0 and "-m cxrseg.predict" not in default.stdout
    assert f"SEGMENTER={tmp_path / 'w'}/seg: folder not found" in default.stderr, default.stderr
    assert "pass WORK=<that work folder>" in default.stderr
    assert "or SEGMENTER=<the segmenter folder>" in default.stderr
    for fix in (f"WORK={ours.parent}", f"SEGMENTER={ours}"):
        fixed = dry(tmp_path, "segment", f"IMAGES={images}", "OUT=o", fix)
        assert f'--segmenter "{ours}"' in fixed.stdout, fixed.stdout
    wrong = dry(tmp_path, "segment", f"IMAGES={tmp_path / 'my cxr'}", "OUT=o", f"SEGMENTER={ours}",
                check=False)
    assert wrong.returncode != 0 and "-m cxrseg.predict" not in wrong.stdout
    assert f"IMAGES={tmp_path / 'my cxr'}: not found" in wrong.stderr


def test_make_segmenter_runs_only_the_segmentation_stages_on_the_named_sets(tmp_path):
    sets = []
    for name in ("montgomery", "shenzhen"):
        for kind in ("images", "masks"):
            (tmp_path / name / kind).mkdir(parents=True)
        sets.append(f"{name}={tmp_path / name / 'images'}:{tmp_path / name / 'masks'}")
    medsam = paper_data(tmp_path)[2]    # no NIH_DIR, RSUA_DIR or ImageNet weights given
    result = dry(tmp_path, "segmenter", "PROFILE=paper", medsam, f"SEG_DATA={' '.join(sets)}",
                 f"IMAGENET_DIR={tmp_path / 'none'}")
    stages = commands(result.stdout)
    modules = [re.search(r"-m (\S+)", c).group(1) for c in stages]
    assert modules == ["cxrseg.split", "cxrseg.finetune", "cxrseg.evaluate"]
    for command in stages:
        assert f"--data {sets[0]} --data {sets[1]}" in command and "--images" not in command


@pytest.mark.parametrize("goal", ["reproduce", "segmenter", "tightness"])
def test_a_seg_data_folder_that_does_not_exist_stops_make_naming_seg_data(tmp_path, goal):
    """Checked when Make starts, not when the segmentation split runs (after the cohort, the cache
    and the runs on original images): each entry's images and masks folders, by cxrseg/sources.py,
    the rule --data follows."""
    m = tmp_path / "montgomery"
    for kind in ("images", "masks"):
        (m / kind).mkdir(parents=True)
    data = paper_data(tmp_path)
    good = f"montgomery={m}/images:{m}/masks"
    for seg_data, message in [
            (f"montgomery={m}/images:{m}/mask",
             f"SEG_DATA 'montgomery={m}/images:{m}/mask': masks folder {m}/mask not found"),
            (f"montgomery={m}/image:{m}/masks", f"images folder {m}/image not found"),
            (f"{good} shenzhen={tmp_path}/nope:{m}/masks:_mask",
             f"SEG_DATA 'shenzhen={tmp_path}/nope:{m}/masks:_mask': images folder"),
            (f"{good} {good}", "dataset name 'montgomery' given more than once"),
            (f"{m}/images:{m}/masks", "expected NAME=IMAGES:MASKS")]:
        result = dry(tmp_path, goal, "PROFILE=paper", *data, f"SEG_DATA={seg_data}",
                     check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert not commands(result.stdout), result.stdout
    fine = dry(tmp_path, "segmenter", "PROFILE=paper", *data, f"SEG_DATA={good}")
    split = next(c for c in commands(fine.stdout) if "-m cxrseg.split" in c)
    assert f"--data {good}" in split
