"""Your own data, end to end on the tiny profile, built once for the file: `make segmenter` on
the generated lung-mask pairs as two named sets (SEG_DATA) with the recommended prompting as
EVALUATE_ARGS runs the segmentation stages and nothing else; the pipeline then takes that segmenter
up to one original and one m0 run. `make segment` on a folder of mixed files gives the pipeline's
masks for the pipeline's images and skips what it cannot read; cxrcls.predict on images written
back from the cache (with the masks `make segment` made) gives the runs' own test predictions."""
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cxrcls import predict as classify
from cxrcls.labels import FINDINGS
from cxrstats.foundation.fileio import read_csv
from makeutil import HAVE_MAKE, SETUP, run_make

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed"),
    pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (tests never install)"),
]
RECIPE = "EVALUATE_ARGS=--box-source prior --refine 1 --fill-holes"
RUNS = ("original", "m0")     # m0: the eroded mask, which the folder path makes alike at 64 px
N_TEST = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny profile's work folder: its generated data, then `make segmenter` on the generated
    lung-mask pairs as two named sets, then the rest up to one finished run per input."""
    root = tmp_path_factory.mktemp("tiny")
    work = root / "work"
    run_make("PROFILE=tiny", f"WORK={work}", str(work / "data" / ".done-data"))
    sets = []
    pairs = sorted((work / "data" / "seg" / "images").iterdir())
    for name, part in (("left", pairs[::2]), ("right", pairs[1::2])):
        for kind in ("images", "masks"):
            (root / name / kind).mkdir(parents=True)
            for path in part:
                shutil.copy(work / "data" / "seg" / kind / path.name, root / name / kind)
        sets.append(f"{name}={root / name / 'images'}:{root / name / 'masks'}")
    seg_data = f"SEG_DATA={' '.join(sets)}"
    segmenter = run_make("segmenter", "PROFILE=tiny", f"WORK={work}", RECIPE, seg_data)
    after_segmenter = sorted(p.name for p in work.iterdir() if not p.name.startswith("."))
    goals = [str(work / "runs" / f"resnet18_{kind}" / "split0" / ".done-train") for kind in RUNS]
    rest = run_make("PROFILE=tiny", f"WORK={work}", RECIPE, seg_data, "INPUTS=original m0",
                    *goals)
    return {"work": work, "segmenter": segmenter, "after_segmenter": after_segmenter,
            "rest": rest}


@pytest.fixture(scope="module")
def tiny(built):
    return built["work"]


def cache_images(work, names, folder):
    """Write the cache rows of `names` as PNG files named like the images into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = np.load(work / "cache" / "images.npy")
    row = {r["image"]: int(r["row"]) for r in read_csv(work / "cache" / "index.csv")}
    for name in names:
        Image.fromarray(stack[row[name]]).save(folder / name)
    return [row[name] for name in names]


def first_test_images(work):
    return [r["image"] for r in read_csv(work / "runs" / "resnet18_original" / "split0" /
                                         "test_ids.csv")][:N_TEST]


@pytest.fixture(scope="module")
def segmented(tiny, tmp_path_factory):
    """`make segment` on a folder of cache test images and other files: a large JPEG, a 16-bit
    PNG, a BMP, a DICOM file, a corrupt PNG and a JPEG 2000 DICOM whose data no decoder reads."""
    from test_foundation_dicom import JPEG2000Lossless, write_dicom
    root = tmp_path_factory.mktemp("segment")
    images = root / "my cxrs"
    cache_images(tiny, first_test_images(tiny), images)
    rng = np.random.default_rng(0)
    film = (rng.normal(120, 30, (300, 260)).clip(0, 255)).astype(np.uint8)
    Image.fromarray(film).save(images / "large.jpg")
    Image.fromarray((film.astype(np.uint16) * 200)[:90, :70]).save(images / "deep.png")
    Image.fromarray(film[:80, :100]).save(images / "old.bmp")
    write_dicom(images / "scanner.dcm", film[:120, :96].astype(np.uint16) * 16, bits_stored=12)
    write_dicom(images / "compressed.dcm", film[:64, :64], syntax=JPEG2000Lossless)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    out = root / "masks"
    result = run_make("segment", "PROFILE=tiny", f"WORK={tiny}", RECIPE, f"IMAGES={images}",
                      f"OUT={out}", "SEGMENT_ARGS=--dilate 0 15 50 --masked --overlay")
    return images, out, result


def test_make_segment_gives_the_pipelines_masks_and_skips_what_it_cannot_read(tiny, segmented):
    images, out, result = segmented
    assert re.search(r"skipped .*broken.png: cannot read image", result.stderr)
    assert re.search(r"skipped .*compressed.dcm: (cannot decode its|compressed with) JPEG 2000",
                     result.stderr)  # the decoder failed on it, or none is installed
    done = json.loads((out / "done_predict.json").read_text())
    assert sorted(s["image"] for s in done["skipped"]) == ["broken.png", "compressed.dcm"]
    readable = sorted(set(p.name for p in images.iterdir()) - {"broken.png", "compressed.dcm"})
    assert [r["image"] for r in read_csv(out / "qc.csv")] == readable
    for name in readable:
        size = Image.open(out / "raw" / f"{name.rsplit('.', 1)[0]}.png").size
        for folder in ("m0", "m15", "m50", "masked_m50", "overlay"):
            assert Image.open(out / folder / f"{name.rsplit('.', 1)[0]}.png").size == size
    # The pipeline's images get the pipeline's masks, with the same checkpoint, threshold, prior
    # and the recipe's prompting (one refine pass, holes filled), none of it given on the line.
    names = first_test_images(tiny)
    raw = np.load(tiny / "masks" / "raw.npy")
    for name, row in zip(names, cache_images(tiny, names, out.parent / "again")):
        np.testing.assert_array_equal(np.asarray(Image.open(out / "raw" / name)) > 0, raw[row])
    shard = json.loads((tiny / "masks" / "shards" / "0of2" / "done_predict.json").read_text())
    for fact in ("checkpoint_id", "threshold", "prior_sha256"):
        assert done[fact] == shard[fact], fact
    for setting in ("prompt", "refine", "fill_holes", "keep_largest"):
        assert done["arguments"][setting] == shard["arguments"][setting], setting
    assert (done["arguments"]["refine"], done["arguments"]["fill_holes"]) == (1, True)
    assert done["settings"]["refine"].startswith("recipe in")


def test_cxrcls_predict_gives_the_runs_own_test_predictions(tiny, segmented, tmp_path):
    images, masks, _ = segmented
    names = first_test_images(tiny)
    only = tmp_path / "test images"
    cache_images(tiny, names, only)
    for kind in RUNS:
        run = tiny / "runs" / f"resnet18_{kind}" / "split0"
        extra = ["--masks", str(masks / "m0")] if kind == "m0" else []
        classify.main(["--run", str(run), "--images", str(only), "--out",
                       str(tmp_path / f"{kind}.csv"), "--device", "cpu", *extra])
        rows = {r["image"]: r for r in read_csv(tmp_path / f"{kind}.csv")}
        ids = [r["image"] for r in read_csv(run / "test_ids.csv")]
        expected = np.load(run / "test_probs.npy")[[ids.index(n) for n in names]]
        got = np.array([[float(rows[n][f"prob_{f}"]) for f in FINDINGS] for n in names])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=kind)
    with pytest.raises(SystemExit, match=r"input 'm0' needs lung masks"):
        classify.main(["--run", str(run), "--images", str(only), "--out",
                       str(tmp_path / "x.csv"), "--device", "cpu"])


def test_make_segmenter_trains_on_named_sets_and_runs_nothing_else(built):
    work = built["work"]
    stages = re.findall(r"^>> (.+)$", built["segmenter"].stdout, re.MULTILINE)
    assert stages == ["seg split", "seg fine-tune", "seg evaluate"]
    assert built["after_segmenter"] == ["data", "seg"]
    assert {r["dataset"] for r in read_csv(work / "seg" / "eval.csv")} == {"left", "right", "all"}
    # the pipeline given the same SEG_DATA takes that segmenter as it is
    assert ">> seg" not in built["rest"].stdout and ">> cohort" in built["rest"].stdout
