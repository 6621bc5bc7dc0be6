"""Grad-CAM and the attribution audit: the map lands where the answer comes from, the hooks read the
right tensors of the real backbones, and the CLI writes what docs/DESIGN.md promises."""
import csv
import json
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cxrcls import attribution, train
from cxrcls.gradcam import finest_deep_layer, grad_cam, target_layer
from cxrcls.labels import FINDINGS
from cxrcls.models import Classifier
from cxrstats.results import mismatched_runs, run_entry
from synthetic_work import lung_masks, make_work

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

SIDE = 32   # the synthetic work folder's image side
GRID_SIDE = 64


def region_mask(rows, cols, side=GRID_SIDE) -> torch.Tensor:
    mask = torch.zeros(side, side)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return mask


class GatedNet(nn.Module):
    """A tiny CNN whose outputs depend only on the input inside `region` (H, W) 0/1: the stem's
    features are zeroed outside it before the last block, so no pixel beyond the region (grown by
    the stem's 1-pixel reach) can change the answer."""

    def __init__(self, region: torch.Tensor, outputs: int = 3):
        super().__init__()
        self.register_buffer("gate", region[None, None])
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        # 1 x 1 then non-overlapping 2 x 2 / stride 2: the block's grid is half the image side and
        # its activity is zero outside the region (aligned to even pixels), exactly.
        self.block = nn.Sequential(nn.Conv2d(4, 8, 1, bias=False), nn.ReLU(),
                                   nn.Conv2d(8, 8, 2, stride=2, bias=False), nn.ReLU())
        self.unused = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, outputs)
        with torch.no_grad():
            self.head.weight.abs_()  # every output grows with the block's activity

    def forward(self, x):
        a = torch.relu(self.stem(x)) * self.gate
        return self.head(self.block(a).mean(dim=(2, 3)))


@pytest.fixture
def gated():
    torch.manual_seed(0)
    region = region_mask((8, 30), (34, 56))  # top right, 22 x 22 of 64 x 64: chance 0.12
    model = GatedNet(region).eval()
    x = torch.rand(6, 1, GRID_SIDE, GRID_SIDE)
    return model, region, x


def in_region_share(model, layer_name, region, x):
    cams, _ = grad_cam(model, model.get_submodule(layer_name), x)
    lungs = region.expand(x.shape[0], -1, -1)
    return attribution.lung_shares(cams, lungs)   # (T, B)


def test_attribution_concentrates_in_the_only_region_the_answer_depends_on(gated):
    model, region, x = gated
    share = in_region_share(model, "block", region, x)
    assert float(region.mean()) < 0.13
    assert share.min() > 0.9, share
    # The same maps scored against a wrong region of the same size (the transposed one, or the
    # mirrored one) get almost nothing: a map in the wrong place fails the check.
    for wrong in (region.T, region.flip(1)):
        assert in_region_share(model, "block", wrong, x).max() < 0.2


def test_the_check_fails_for_a_layer_before_the_gate(gated):
    """Pointed at the stem (whose activations are spread over the whole image and only later gated),
    Grad-CAM's channel-averaged gradients spread the map everywhere: the same criterion fails."""
    model, region, x = gated
    assert in_region_share(model, "stem", region, x).mean() < 0.5


def test_maps_follow_the_region_when_it_moves():
    torch.manual_seed(0)
    x = torch.rand(4, 1, GRID_SIDE, GRID_SIDE)
    for rows, cols in [((2, 20), (2, 20)), ((40, 60), (4, 24)), ((24, 40), (28, 44))]:
        region = region_mask(rows, cols)
        torch.manual_seed(1)
        model = GatedNet(region).eval()
        share = in_region_share(model, "block", region, x)
        assert share.min() > 0.9, (rows, cols, share)


def test_grad_cam_errors_and_leaves_the_model_as_it_was(gated):
    model, region, x = gated
    with pytest.raises(ValueError, match="not run"):
        grad_cam(model, model.unused, x)
    with pytest.raises(ValueError, match="not found"):
        target_layer(model, "layer9")
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        grad_cam(model, model.block, x)
    model.eval()
    model.head.weight.requires_grad_(False)
    grad_cam(model, model.block, x)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert flags.pop("head.weight") is False and all(flags.values())
    assert all(p.grad is None for p in model.parameters())


def direct_grad_cam(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of the last block without hooks, splitting torchvision's forward by hand. ResNet:
    A = layer4 output -> avgpool -> fc; DenseNet: A = features output -> ReLU -> pool -> head."""
    net = model.net
    z = (x.expand(-1, 3, -1, -1) - model.mean) / model.std
    if model.arch.startswith("resnet"):
        z = net.maxpool(net.relu(net.bn1(net.conv1(z))))
        activation = net.layer4(net.layer3(net.layer2(net.layer1(z))))
        logits = net.fc(torch.flatten(net.avgpool(activation), 1))
    else:
        activation = net.features(z)
        logits = net.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(activation), 1), 1))
    cams = []
    for t in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, t].sum(), activation, retain_graph=True)
        cams.append(torch.relu((g.mean(dim=(2, 3), keepdim=True) * activation).sum(1)))
    return torch.stack(cams).detach(), logits.detach()


@pytest.mark.parametrize("arch, grid", [("resnet18", 2), ("resnet50", 2), ("densenet121", 2)])
def test_hooks_read_the_last_block_of_the_real_backbones(arch, grid):
    torch.manual_seed(0)
    model = Classifier(arch).eval()
    name, layer = target_layer(model)
    assert name == {"resnet18": "layer4", "resnet50": "layer4", "densenet121": "features"}[arch]
    x = torch.rand(2, 1, 64, 64)
    cams, logits = grad_cam(model, layer, x)
    expected_cams, expected_logits = direct_grad_cam(model, x)
    assert cams.shape == (len(FINDINGS), 2, grid, grid)
    assert torch.allclose(logits, expected_logits, atol=1e-5)
    assert torch.allclose(logits, model(x).detach(), atol=1e-5)  # the hook changes no output
    assert torch.allclose(cams, expected_cams, rtol=1e-4, atol=1e-6)
    assert (cams > 0).any()


@pytest.mark.parametrize("arch, side, expected", [
    ("resnet50", 64, "layer2"), ("resnet50", 128, "layer3"), ("resnet50", 224, "layer4"),
    ("resnet50", 16, "layer1"), ("densenet121", 64, "features.denseblock2"),
    ("densenet121", 224, "features")])
def test_default_layer_is_the_deepest_with_a_grid_of_at_least_7(arch, side, expected):
    model = Classifier(arch).eval()
    name, layer = target_layer(model, image_size=side)
    assert name == expected == finest_deep_layer(model, side, 7)
    cams, _ = grad_cam(model, layer, torch.rand(1, 1, side, side), [0])
    assert cams.shape[-1] >= 7 or name == "layer1"              # 16 px: no block reaches 7
    assert target_layer(model, image_size=side, min_grid=1)[0] in ("layer4", "features")


def test_box_masks_take_the_pixels_whose_centre_is_inside():
    boxes = torch.tensor([[0.0, 0.0, 0.25, 0.5], [float("nan")] * 4]).numpy()
    masks = attribution.box_masks(boxes, 8)
    assert masks.shape == (2, 8, 8)
    assert masks[0, :4, :2].all() and masks[0].sum() == 8       # 2 columns x 4 rows
    assert not masks[1].any()


def test_region_share_finds_a_corner_map_and_not_a_flat_one():
    cams = torch.zeros(2, 1, 8, 8)
    cams[0, 0, :2, -2:] = 1.0                                   # top-right corner cell block only
    cams[1, 0] = 1.0                                            # flat
    box = attribution.box_masks(torch.tensor([[0.75, 0.0, 1.0, 0.25]]).numpy(), 64)
    shares = attribution.lung_shares(cams, box)
    assert float(shares[0, 0]) > 0.6                            # bilinear blur leaks a little
    assert float(shares[1, 0]) == pytest.approx(1 / 16)         # flat: the box's area


def test_lung_shares_of_flat_zero_and_one_cell_maps():
    lungs = torch.zeros(3, 8, 8)
    lungs[:, :, :2] = 1                                      # a quarter of the image
    cams = torch.zeros(2, 3, 2, 2)
    cams[0] = 1.0                                            # flat: share = area fraction
    cams[1, 0, :, 0] = 1.0                                   # left column of the 2 x 2 grid only
    shares = attribution.lung_shares(cams, lungs)
    assert torch.allclose(shares[0], torch.full((3,), 0.25, dtype=torch.float64))
    # Bilinear 2 -> 8 (half-pixel centres) gives the 8 columns the weights 1, 1, .875, .625, .375,
    # .125, 0, 0 (sum 4); the lungs' two columns hold 2 of it.
    assert float(shares[1, 0]) == pytest.approx(0.5)
    assert torch.isnan(shares[1, 1:]).all()                  # zero map: no share


# ----------------------------------------------------------------------------- the CLI

FAST = ["--arch", "resnet18", "--weights", "none", "--device", "cpu", "--lr", "1e-3",
        "--batch-size", "4", "--threads", "1", "--seed", "3", "--epochs", "1"]
SETTINGS = ("resnet18_original", "resnet18_m15")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = make_work(tmp_path_factory.mktemp("attr"), n=20, size=SIDE, fractions=(0.4, 0.3, 0.3))
    for setting in SETTINGS:
        kind = setting.split("_", 1)[1]
        out = work / "runs" / setting / "split0"
        train.main(["--work", str(work), "--train-input", kind, "--out", str(out), *FAST])
        assert (out / "done.json").is_file()
    return work


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_the_documented_files(trained, tmp_path):
    out = tmp_path / "results"
    attribution.main(["--work", str(trained), "--out", str(out), "--device", "cpu",
                      "--panel-images", "2", "--min-grid", "1"])
    rows = read(out / "attribution.csv")
    assert list(rows[0]) == attribution.SUMMARY_HEADER
    expected = [(s, f) for s in SETTINGS for f in FINDINGS]
    assert [(r["setting"], r["label"]) for r in rows] == expected
    chance = float(lung_masks(1, SIDE).mean())
    for r in rows:
        assert int(r["n_images"]) + int(r["n_zero_cam"]) == 6          # the split's test images
        if int(r["n_images"]):
            assert float(r["chance_level"]) == pytest.approx(chance)
            # 32 px input: layer4 is 1 x 1, so the upsampled map is flat and the share is chance
            assert float(r["in_lung_share"]) == pytest.approx(chance, abs=1e-6)
    per_image = read(out / "attribution_per_image.csv")
    assert len(per_image) == 2 * 6 * len(FINDINGS)
    assert list(per_image[0]) == attribution.PER_IMAGE_HEADER
    for name in ("figures/attribution_panels.png", "figures/.cxr-lungmask", "attribution.md",
                 "run_attribution.json", "done_attribution.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "run_attribution.json").read_text())
    assert record["mask_extent"] == "field"      # as masks/done_predict.json records it
    assert json.loads((out / "done_attribution.json").read_text())["mask_extent"] == "field"
    assert [r["layer"] for r in record["runs"]] == ["layer4", "layer4"]
    assert [r["input"] for r in record["runs"]] == ["original", "m15"]
    assert all(r["region_share"] == "" and r["n_region"] == "0" for r in rows)  # no --region-csv


def test_region_csv_gives_each_boxed_image_its_share(trained, tmp_path):
    out = tmp_path / "results"
    first = tmp_path / "first"
    attribution.main(["--work", str(trained), "--out", str(first), "--device", "cpu",
                      "--settings", SETTINGS[0]])
    images = sorted({r["image"] for r in read(first / "attribution_per_image.csv")})
    regions = tmp_path / "regions.csv"
    regions.write_text("Image Index,cue_x0,cue_y0,cue_x1,cue_y1\n"
                       f"{images[0]},0,0,1,1\n{images[1]},0,0,0.5,0.5\n{images[2]},,,,\n")
    attribution.main(["--work", str(trained), "--out", str(out), "--device", "cpu",
                      "--settings", SETTINGS[0], "--region-csv", str(regions)])
    per_image = read(out / "attribution_per_image.csv")
    for r in per_image:
        if r["in_lung_share"] == "":
            continue
        if r["image"] == images[0]:                              # the whole image: all of it
            assert float(r["region_share"]) == pytest.approx(1.0)
            assert float(r["region_fraction"]) == pytest.approx(1.0)
        elif r["image"] == images[1]:
            assert 0 <= float(r["region_share"]) <= 1
            assert float(r["region_fraction"]) == pytest.approx(0.25)
        else:
            assert r["region_share"] == r["region_fraction"] == ""
    rows = read(out / "attribution.csv")
    assert all(0 < int(r["n_region"]) <= 2 for r in rows if int(r["n_images"]))
    assert "inside each image's region" in (out / "attribution.md").read_text()


@pytest.mark.parametrize("text, match", [
    ("Image Index,cue_x0,cue_y0,cue_x1\na.png,0,0,1\n", "cue_y1"),
    ("Image Index,cue_x0,cue_y0,cue_x1,cue_y1\na.png,0,0,1,x\n", "line 2.*four numbers"),
    ("Image Index,cue_x0,cue_y0,cue_x1,cue_y1\na.png,0.5,0,0.4,1\n", "line 2.*x0 < x1")])
def test_bad_region_csv_is_refused_naming_the_file(trained, tmp_path, text, match):
    regions = tmp_path / "regions.csv"
    regions.write_text(text)
    with pytest.raises(SystemExit, match=match):
        attribution.main(["--work", str(trained), "--out", str(tmp_path / "r"), "--device", "cpu",
                          "--region-csv", str(regions)])
    assert not (tmp_path / "r" / "done_attribution.json").exists()


def test_max_images_takes_the_same_subset_for_every_setting(trained, tmp_path):
    out = tmp_path / "results"
    attribution.main(["--work", str(trained), "--out", str(out), "--device", "cpu",
                      "--max-images", "3", "--settings", *SETTINGS, "--splits", "0"])
    per_image = read(out / "attribution_per_image.csv")
    images = {s: sorted({r["image"] for r in per_image if r["setting"] == s}) for s in SETTINGS}
    assert len(images[SETTINGS[0]]) == 3 and images[SETTINGS[0]] == images[SETTINGS[1]]


def test_unfinished_or_unknown_runs_are_refused_with_the_folder_named(trained, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(trained, work)
    args = ["--work", str(work), "--out", str(tmp_path / "r"), "--device", "cpu"]
    with pytest.raises(SystemExit, match="resnet18_m50"):
        attribution.main(args + ["--settings", "resnet18_m50"])
    with pytest.raises(SystemExit, match="not a setting name"):
        attribution.main(args + ["--settings", "../runs"])
    with pytest.raises(SystemExit, match="split3"):
        attribution.main(args + ["--splits", "3"])
    unfinished = work / "runs" / SETTINGS[1] / "split0"
    (unfinished / "done.json").unlink()
    with pytest.raises(SystemExit, match=f"{SETTINGS[1]}.*split0.*done.json"):
        attribution.main(args)
    # No done.json anywhere (a work folder trained before completion records): still refused.
    (work / "runs" / SETTINGS[0] / "split0" / "done.json").unlink()
    with pytest.raises(SystemExit, match="done.json"):
        attribution.main(args)


def test_record_names_each_run_used_as_the_report_records_it(trained, tmp_path):
    out = tmp_path / "results"
    attribution.main(["--work", str(trained), "--out", str(out), "--device", "cpu",
                      "--settings", SETTINGS[1], "--max-images", "2", "--min-grid", "1"])
    record = json.loads((out / "done_attribution.json").read_text())
    folder = trained / "runs" / SETTINGS[1] / "split0"
    assert record["runs"] == [{"setting": SETTINGS[1], "split": 0,
                               **run_entry(trained, folder)}]
    assert record["runs"][0]["folder"] == f"runs/{SETTINGS[1]}/split0"
    report_read = [run_entry(trained, trained / "runs" / s / "split0") for s in SETTINGS]
    assert mismatched_runs(record["runs"], report_read) is None
    assert "runs/resnet18_m15/split0" in mismatched_runs(record["runs"], report_read[:1])


def test_region_csv_saved_by_excel_is_read(tmp_path):
    regions = tmp_path / "regions.csv"
    regions.write_bytes("\ufeff\"Image Index\",cue_x0,cue_y0,cue_x1,cue_y1\r\n"
                        "\"a, b.png\",0.1,0.2,0.3,0.4\r\nc.png,,,,\r\n".encode("utf-8"))
    assert attribution.read_regions(regions, "cue") == {"a, b.png": (0.1, 0.2, 0.3, 0.4)}


def test_an_output_folder_of_the_users_files_is_refused_untouched(trained, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "attribution.csv").write_bytes(b"my numbers")
    with pytest.raises(SystemExit) as error:
        attribution.main(["--work", str(trained), "--out", str(out), "--device", "cpu"])
    assert str(error.value).startswith("error: ") and "attribution.csv" in str(error.value)
    assert [p.name for p in out.iterdir()] == ["attribution.csv"]
    assert (out / "attribution.csv").read_bytes() == b"my numbers"


def test_raw_masks_of_an_unfinished_prediction_are_refused(trained, tmp_path):
    work = shutil.copytree(trained, tmp_path / "work")
    (work / "masks" / "done_predict.json").unlink()   # cxrseg.predict killed or running
    with pytest.raises(SystemExit, match="masks: no done_predict.json"):
        attribution.main(["--work", str(work), "--out", str(tmp_path / "r"), "--device", "cpu",
                          "--settings", SETTINGS[0]])
    assert not (tmp_path / "r" / "done_attribution.json").exists()
