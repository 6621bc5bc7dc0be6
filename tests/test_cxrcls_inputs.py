"""Input variants, the memmap batch loader, batch augmentation and the model wrapper."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrcls import augment as A
from cxrcls.inputs import compose, mask_boundary, open_input
from cxrcls.loader import BatchLoader
from cxrcls.models import Classifier, build_model, load_weights
from cxrstats.foundation.fileio import (IncompleteRunError, file_sha256, read_csv, save_npy,
                                        write_csv, write_json)
from synthetic_work import made_again, make_work


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_work(tmp_path_factory.mktemp("work"), n=20, size=32)


def blob_masks(n=3, size=40, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    masks = []
    for _ in range(n):
        cy, cx, r = rng.integers(10, 30), rng.integers(10, 30), rng.integers(5, 12)
        # a disk, plus a block that touches the border
        m = ((y - cy) ** 2 + (x - cx) ** 2 <= r * r) | ((y > 30) & (x < 8))
        masks.append(m.astype(np.uint8))
    return np.stack(masks)


def test_overlay_matches_cxrseg_and_cutout_is_image_times_mask():
    morphology = pytest.importorskip("cxrseg.morphology")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 40, 40), dtype=np.uint8)
    masks = blob_masks()
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    m = torch.from_numpy(masks).unsqueeze(1)
    for thickness in (1, 2, 3):
        got = (compose(x, m, "overlay", thickness) * 255).round().byte().squeeze(1).numpy()
        for i in range(3):
            expected = morphology.overlay(images[i], masks[i], thickness)
            np.testing.assert_array_equal(got[i], expected)
            np.testing.assert_array_equal(mask_boundary(m, thickness)[i, 0].numpy(),
                                          morphology.boundary(masks[i], thickness))
    cut = (compose(x, m, "m15") * 255).round().byte().squeeze(1).numpy()
    np.testing.assert_array_equal(cut, images * masks)
    assert compose(x, None, "original") is x


def copy_work(work, tmp_path):
    """A private copy of the module's work folder, for tests that damage it."""
    import shutil
    return Path(shutil.copytree(work, tmp_path / "work"))


def test_misaligned_masks_are_refused_naming_both_files(work, tmp_path):
    source = open_input(work / "cache", work / "masks", "m50")
    assert source.masks.shape == source.images.shape
    bad = copy_work(work, tmp_path)
    save_npy(bad / "masks" / "m15.npy", np.zeros((19, 32, 32), np.uint8))
    made_again(bad / "masks", "done_postprocess.json")  # as post-processed for another cache
    with pytest.raises(ValueError, match=r"m15.npy.*images.npy.*not aligned"):
        open_input(bad / "cache", bad / "masks", "m15")
    (bad / "masks" / "raw.npy").unlink()
    with pytest.raises(IncompleteRunError, match="done_predict.json.*lists.*raw.npy"):
        open_input(bad / "cache", bad / "masks", "overlay")


def test_masks_made_for_another_cache_are_refused_row_by_row(work, tmp_path):
    """Same N, same shape, one image renamed: the shapes agree, the index files do not."""
    bad = copy_work(work, tmp_path)
    rows = read_csv(bad / "cache" / "index.csv")
    rows[7]["image"] = "renamed.png"
    write_csv(bad / "cache" / "index.csv", ["row", "image"], [[r["row"], r["image"]] for r in rows])
    made_again(bad / "cache")
    for kind in ("m15", "overlay"):
        with pytest.raises(ValueError, match=r"masks/index.csv and .*cache/index.csv differ "
                                             r"\(row 7 is \('7', 'img00007.png'\)"):
            open_input(bad / "cache", bad / "masks", kind)
    assert open_input(bad / "cache", bad / "masks", "original").masks is None
    write_csv(bad / "masks" / "index.csv", ["row", "image"], [[0, "img00000.png"]])
    with pytest.raises(ValueError, match=r"1 rows against 20"):
        open_input(bad / "cache", bad / "masks", "m50")
    (bad / "masks" / "index.csv").unlink()
    with pytest.raises(FileNotFoundError, match="masks/index.csv: not found"):
        open_input(bad / "cache", bad / "masks", "m50")
    with pytest.raises(IncompleteRunError, match="index.csv"):  # listed by done_predict.json
        open_input(bad / "cache", bad / "masks", "overlay")


def test_unfinished_stages_and_stale_mask_files_are_refused(work, tmp_path):
    bad = copy_work(work, tmp_path)
    save_npy(bad / "masks" / "m30.npy", np.load(bad / "masks" / "m15.npy"))  # left by an older run
    with pytest.raises(FileNotFoundError, match=r"m30.npy.*not among the outputs.*postprocess"):
        open_input(bad / "cache", bad / "masks", "m30")
    (bad / "masks" / "done_postprocess.json").unlink()
    with pytest.raises(IncompleteRunError, match="no done_postprocess.json"):
        open_input(bad / "cache", bad / "masks", "m15")
    (bad / "cache" / "done.json").unlink()
    with pytest.raises(IncompleteRunError, match=r"cache: no done.json"):
        open_input(bad / "cache", bad / "masks", "original")
    other = copy_work(work, tmp_path / "o")
    write_csv(other / "cache" / "index.csv", ["row", "image"], [[0, "img00000.png"]])
    made_again(other / "cache")
    with pytest.raises(ValueError, match=r"images.npy has 20 rows but .*index.csv has 1"):
        open_input(other / "cache", other / "masks", "original")


def test_any_dilation_radius_opens_its_mask_file_and_other_names_are_refused(tmp_path):
    """Which names are inputs: tests/test_foundation_input_names.py. Here: each opens its own
    file."""
    radii = make_work(tmp_path / "w", n=6, size=32, radii=(0, 30, 100))
    for r in (0, 30, 100):
        source = open_input(radii / "cache", radii / "masks", f"m{r}")
        np.testing.assert_array_equal(source.masks, np.load(radii / "masks" / f"m{r}.npy"))
    assert (np.load(radii / "masks" / "m100.npy").sum() > np.load(radii / "masks" / "m30.npy").sum()
            > np.load(radii / "masks" / "m0.npy").sum())
    with pytest.raises(ValueError, match="unknown input"):
        open_input(radii / "cache", radii / "masks", "m-1")
    with pytest.raises(FileNotFoundError, match=r"nomasks: mask folder not found.*'m0'"):
        open_input(radii / "cache", radii / "nomasks", "m0")


def test_loader_slices_in_order_and_shards_global_batches(work):
    source = open_input(work / "cache", work / "masks", "original")
    labels = np.arange(20 * 5, dtype=np.float32).reshape(20, 5)
    rows = np.array([3, 1, 4, 15, 9, 2, 6, 5, 8, 19, 7])
    loader = BatchLoader(source, rows, labels, batch_size=4)
    batches = list(loader)
    assert [len(b.positions) for b in batches] == [4, 4, 3]
    got = np.concatenate([b.images for b in batches])
    np.testing.assert_array_equal(got, np.asarray(source.images)[rows])
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), labels[rows])
    # Shuffled, dropping the last partial batch; two ranks split each global batch between them.
    single = BatchLoader(source, rows, labels, 4, shuffle=True, drop_last=True, seed=7)
    single.set_epoch(3)
    ranks = [BatchLoader(source, rows, labels, 4, shuffle=True, drop_last=True, seed=7,
                         rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(3)
    for whole, a, b in zip(single, *ranks):
        np.testing.assert_array_equal(whole.positions, np.concatenate([a.positions, b.positions]))
        assert (a.offset, b.offset, a.global_size) == (0, 2, 4)
    assert len(single) == 2
    other = BatchLoader(source, rows, labels, 4, shuffle=True, drop_last=True, seed=7)
    other.set_epoch(4)
    assert not np.array_equal(single.order(), other.order())


def test_augmentation_is_seeded_and_bounded():
    x = torch.rand(6, 1, 24, 24)
    p1 = A.draw_params(torch.Generator().manual_seed(0), 6)
    p2 = A.draw_params(torch.Generator().manual_seed(0), 6)
    torch.testing.assert_close(A.augment(x, p1), A.augment(x, p2), rtol=0, atol=0)
    assert p1.radians.abs().max() <= np.radians(7) and (p1.intensity - 1).abs().max() <= 0.1
    # With no rotation and no intensity change, the augmentation is exactly a flip (or nothing).
    flip = torch.tensor([True, False, True, False, True, False])
    plain = A.AugmentParams(flip, torch.zeros(6, dtype=torch.float64),
                            torch.ones(6, dtype=torch.float64))
    out = A.augment(x, plain)
    torch.testing.assert_close(out[flip], x[flip].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flip], x[~flip], atol=1e-5, rtol=0)
    # A 90 degree rotation of a square maps pixel centres onto pixel centres: exact up to rounding.
    quarter = A.AugmentParams(torch.zeros(1, dtype=torch.bool),
                              torch.full((1,), np.pi / 2, dtype=torch.float64),
                              torch.ones(1, dtype=torch.float64))
    turned = A.augment(x[:1], quarter)
    assert any(torch.allclose(turned, torch.rot90(x[:1], k, (2, 3)), atol=1e-5) for k in (1, 3))


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_study_backbones_give_five_logits_from_gray(arch):
    torch.manual_seed(0)
    model = build_model(arch, "none").eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 5)


def test_freeze_backbone_and_weight_loading(tmp_path):
    torch.manual_seed(0)
    model = Classifier("resnet18")
    model.freeze_backbone()
    model.train()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"]
    before = model.net.bn1.running_mean.clone()
    model(torch.rand(4, 1, 32, 32))
    torch.testing.assert_close(model.net.bn1.running_mean, before, rtol=0, atol=0)  # BN fixed
    # Our checkpoint format, a plain torchvision state dict, and one with a 14-label head all load.
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")
    other = Classifier("resnet18")
    load_weights(other, tmp_path / "best.pt")
    torch.testing.assert_close(other.state_dict(), model.state_dict())
    plain = {k.removeprefix("net."): v for k, v in model.state_dict().items()}
    plain["fc.weight"], plain["fc.bias"] = torch.zeros(14, 512), torch.zeros(14)
    torch.save(plain, tmp_path / "plain.pt")
    assert "re-initialized" in load_weights(Classifier("resnet18"), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(Classifier("resnet50"), tmp_path / "best.pt")


def test_masks_made_from_raw_masks_predict_has_replaced_since_are_refused(work, tmp_path):
    bad = copy_work(work, tmp_path)
    record = json.loads((bad / "masks" / "done_predict.json").read_text())
    save_npy(bad / "masks" / "raw.npy", 1 - np.load(bad / "masks" / "raw.npy"))  # predicted again
    write_json(bad / "masks" / "done_predict.json",
               {**record, "raw_sha256": file_sha256(bad / "masks" / "raw.npy")})
    with pytest.raises(IncompleteRunError, match=r"masks: the post-processed masks were made "
                                                 r"from another raw.npy"):
        open_input(bad / "cache", bad / "masks", "m15")
    open_input(bad / "cache", bad / "masks", "overlay")       # the raw masks themselves: current
    write_json(bad / "masks" / "done_predict.json", {**record, "raw_sha256": "0" * 64})
    with pytest.raises(IncompleteRunError, match=r"masks/raw.npy: changed since the "
                                                 r"cxrseg.predict run wrote it .*re-run "
                                                 r"cxrseg.predict"):
        open_input(bad / "cache", bad / "masks", "overlay")   # raw.npy is not the one predicted
