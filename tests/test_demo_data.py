"""Demo data generator: determinism, well-formed masks and label table, planted co-occurrence."""
import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cxrcls import demo_data, phantom
from cxrcls.labels import FINDINGS, LABELS
from cxrstats.foundation.fileio import read_csv, read_done


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except run.json and done.json (they record the
    time)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("run.json", "done.json")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    demo_data.main(["--out", str(out), "--n-seg", "6", "--n-cls", "24", "--size", "64",
                    "--seed", "3"])
    return out


def test_same_seed_same_bytes_and_other_seed_differs(demo, tmp_path):
    again = tmp_path / "again"
    demo_data.main(["--out", str(again), "--n-seg", "6", "--n-cls", "24", "--size", "64",
                    "--seed", "3"])
    assert _digest(again) == _digest(demo)
    other = tmp_path / "other"
    demo_data.main(["--out", str(other), "--n-seg", "6", "--n-cls", "24", "--size", "64",
                    "--seed", "4"])
    assert _digest(other) != _digest(demo)


def test_segmentation_pairs_share_stems_and_masks_are_binary_lungs(demo):
    images = sorted(p.name for p in (demo / "seg" / "images").glob("*.png"))
    masks = sorted(p.name for p in (demo / "seg" / "masks").glob("*.png"))
    assert images == masks and len(images) == 6
    for name in images:
        image = np.array(Image.open(demo / "seg" / "images" / name))
        mask = np.array(Image.open(demo / "seg" / "masks" / name))
        assert image.shape == mask.shape == (64, 64) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        assert 0.08 < (mask > 0).mean() < 0.45
        # Lungs are darker than the rest of the image.
        assert image[mask > 0].mean() < image[mask == 0].mean()


def test_lungs_lie_inside_the_body_and_have_two_fields():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ph = phantom.render(rng, phantom.sample_patient(rng), 128, phantom.sample_labels(rng))
        assert ph.lungs.any()
        assert not (ph.lungs.astype(bool) & ~ph.body.astype(bool)).any()
        _, components = ndimage.label(ph.lungs)
        assert components == 2


def test_label_table_is_well_formed(demo):
    rows = read_csv(demo / "nih" / "Data_Entry_2017.csv",
                    required=["Image Index", "Finding Labels", "Patient ID"])
    assert len(rows) == 24
    names = [r["Image Index"] for r in rows]
    assert len(set(names)) == 24
    assert sorted(names) == sorted(p.name for p in (demo / "nih" / "images").glob("*.png"))
    allowed = set(FINDINGS)
    for row in rows:
        labels = row["Finding Labels"].split("|")
        distinct = len(set(labels)) == len(labels)
        assert labels == ["No Finding"] or (set(labels) <= allowed and distinct)
        assert row["Image Index"].startswith(f"{int(row['Patient ID']):08d}_")
    patients = [r["Patient ID"] for r in rows]
    assert len(set(patients)) < len(patients)  # several images per patient
    info = json.loads((demo / "run.json").read_text())
    assert info["classification"]["images"] == 24 and info["seed"] == 3


def test_mass_and_nodule_cooccur_more_than_any_other_pair():
    rng = np.random.default_rng(0)
    draws = [phantom.sample_labels(rng) for _ in range(4000)]
    y = np.array([[label in d for label in FINDINGS] for d in draws], float)
    assert 0.2 < (y.sum(1) == 0).mean() < 0.4   # normal images
    assert y.mean(0).min() > 0.1                # every finding is common enough to learn

    def lift(i, j):
        return (y[:, i] * y[:, j]).mean() / (y[:, i].mean() * y[:, j].mean())

    mass_nodule = lift(0, 1)
    others = [lift(i, j) for i, j in combinations(range(5), 2) if (i, j) != (0, 1)]
    assert mass_nodule > 1.5 and mass_nodule > max(others) + 0.3


def test_findings_brighten_the_lungs_only_inside():
    rng = np.random.default_rng(1)
    anatomy = phantom.sample_patient(rng)
    for label in FINDINGS:
        u, v = phantom._grid(96)
        lungs = phantom._anatomy_layers(u, v, anatomy)["lungs"]
        added = phantom._draw_findings(np.random.default_rng(7), u, v, lungs, (label,), 96)
        assert added.max() > 0.15, label                            # visible
        outside = ~ndimage.binary_dilation(lungs, iterations=4)
        assert np.abs(added[outside]).max() < 1e-3, label           # confined to the lungs
        assert not phantom._draw_findings(np.random.default_rng(7), u, v, lungs, (), 96).any()


def test_spurious_cue_off_by_default_and_tied_to_pneumonia_when_on(demo, tmp_path):
    truth = read_csv(demo / "nih" / "phantoms.csv", required=["Image Index", "spurious_cue"])
    assert all(r["spurious_cue"] == "0" for r in truth)
    out = tmp_path / "cue"
    demo_data.main(["--out", str(out), "--n-seg", "0", "--n-cls", "60", "--size", "64",
                    "--seed", "1", "--spurious-cue"])
    labels = {r["Image Index"]: r["Finding Labels"].split("|")
              for r in read_csv(out / "nih" / "Data_Entry_2017.csv")}
    truth = read_csv(out / "nih" / "phantoms.csv")
    cue = {r["Image Index"]: r["spurious_cue"] == "1" for r in truth}
    with_p = [cue[n] for n, ls in labels.items() if "Pneumonia" in ls]
    without = [cue[n] for n, ls in labels.items() if "Pneumonia" not in ls]
    assert with_p and without and np.mean(with_p) > np.mean(without) + 0.4


def test_cue_ring_lies_outside_the_lungs():
    u, v = phantom._grid(128)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        anatomy = phantom.sample_patient(rng)
        lungs = phantom.render(rng, anatomy, 128).lungs.astype(bool)
        for corner in (0, 1):
            ring = phantom.spurious_cue_layer(u, v, corner) > 0.1
            assert ring.any() and not (ring & lungs).any()


def test_cue_stays_a_ring_wider_than_the_side_marker_at_the_classifiers_64_px():
    # Rendered at the demo's 256 px, resized to the classifier's 64 px as the cache and training do
    # (bilinear with antialiasing): the ring must stay an object of its own, wider than the marker.
    u, v = phantom._grid(256)
    ring = Image.fromarray(np.uint8(255 * np.clip(phantom.spurious_cue_layer(u, v, 1), 0, 1)))
    small = np.asarray(ring.resize((64, 64), Image.Resampling.BILINEAR)) / 255
    columns = np.flatnonzero((small > 0.3).any(axis=0))
    marker = phantom._GLYPHS["L"]
    marker_width = len(marker[0]) * (256 // 80) * 64 / 256
    assert columns.size >= 7 and columns.size >= 1.5 * marker_width
    # the box recorded in phantoms.csv holds the whole ring
    x0, y0, x1, y1 = (round(t * 256) for t in phantom.cue_box(1))
    layer = phantom.spurious_cue_layer(u, v, 1)
    inside = np.zeros_like(layer, bool)
    inside[y0:y1, x0:x1] = True
    assert layer[~inside].max() < 0.01 and layer[inside].max() > 0.9


def test_phantoms_csv_records_the_cue_box_of_cue_images_only(tmp_path):
    out = tmp_path / "cue"
    demo_data.main(["--out", str(out), "--n-seg", "0", "--n-cls", "20", "--size", "64",
                    "--seed", "2", "--spurious-cue"])
    truth = read_csv(out / "nih" / "phantoms.csv", required=list(demo_data.PHANTOM_COLUMNS))
    boxes = {"cue_x0", "cue_y0", "cue_x1", "cue_y1"}
    assert any(r["spurious_cue"] == "1" for r in truth)
    for r in truth:
        cells = [r[c] for c in sorted(boxes)]
        if r["spurious_cue"] == "1":
            x0, y0, x1, y1 = (float(r[c]) for c in ("cue_x0", "cue_y0", "cue_x1", "cue_y1"))
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 < 0.3       # a top corner
            image = np.asarray(Image.open(out / "nih" / "images" / r["Image Index"]))
            patch = image[int(y0 * 64):int(np.ceil(y1 * 64)), int(x0 * 64):int(np.ceil(x1 * 64))]
            assert patch.max() > 200                              # the ring is drawn there
        else:
            assert cells == [""] * 4


def test_phantom_findings_are_the_projects_findings():
    assert not hasattr(phantom, "LABELS")  # LABELS means the 6 columns (with No Finding) elsewhere
    assert LABELS[:5] == FINDINGS and len(LABELS) == 6


@pytest.mark.parametrize("flag, value", [("--size", "8"), ("--n-seg", "-1"), ("--n-cls", "-3"),
                                         ("--seed", "-1"), ("--n-cls", "ten")])
def test_bad_arguments_give_clear_errors(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit):
        demo_data.main(["--out", str(tmp_path / "d"), flag, value])
    assert f"argument {flag}: " in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_unknown_finding_is_refused():
    with pytest.raises(ValueError, match="unknown finding"):
        rng = np.random.default_rng(0)
        phantom.render(rng, phantom.sample_patient(rng), 64, ("Cardiomegaly",))


def test_a_rerun_replaces_its_images_and_a_users_folder_is_refused_untouched(tmp_path):
    out = tmp_path / "data"
    argv = ["--out", str(out), "--n-seg", "4", "--n-cls", "12", "--size", "32", "--seed", "0"]
    demo_data.main(argv)
    assert read_done(out, "done.json")["outputs"] == list(demo_data.OUTPUTS)
    demo_data.main([*argv[:2], "--n-seg", "2", "--n-cls", "5", *argv[6:]])  # a smaller draw
    assert len(list((out / "seg" / "images").glob("*.png"))) == 2
    assert len(list((out / "nih" / "images").glob("*.png"))) == 5   # none left from the first
    for user, mine in ((tmp_path / "a", tmp_path / "a" / "notes.txt"),
                       (tmp_path / "b", tmp_path / "b" / "nih" / "images" / "00000001_000.png")):
        mine.parent.mkdir(parents=True)
        mine.write_bytes(b"the user's")
        with pytest.raises(SystemExit) as error:
            demo_data.main(["--out", str(user), *argv[2:]])
        assert str(error.value).startswith("error: ") and mine.name in str(error.value)
        assert [p for p in user.rglob("*") if p.is_file()] == [mine]
        assert mine.read_bytes() == b"the user's"
