"""cxrseg fine-tuning, resume, evaluation and prediction on the tiny random 'micro' model and tiny
synthetic image/mask pairs (tests/synthetic_pairs.py: two bright rectangles as lungs)."""
import argparse
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cliargs import with_flags
from cxrseg import evaluate, finetune, predict, split
from cxrseg.engine import load_model
from cxrseg.prompts import build_prior
from cxrstats.foundation.fileio import write_done
from synthetic_pairs import write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = write_pairs(tmp_path_factory.mktemp("pairs"), "c", n=10)
    split.main(["--images", str(root / "images"), "--masks", str(root / "masks"),
                "--out", str(root / "seg" / "splits.csv"), "--seed", "0"])
    return root


def _finetune_args(root, out, *extra):
    return with_flags(["--images", str(root / "images"), "--masks", str(root / "masks"),
            "--splits", str(root / "seg" / "splits.csv"),
            "--checkpoint", "micro", "--out", str(out), "--batch-size", "4", "--lr", "1e-3",
            "--patience", "10", "--prior-box-fraction", "0.5", "--device", "cpu"], *extra)


def test_one_epoch_lowers_the_loss_on_a_fixed_batch(pairs):
    from cxrseg.pairs import find_pairs, load_pairs
    model = load_model("micro", seed=0)
    images, masks = load_pairs(find_pairs(pairs / "images", pairs / "masks"))
    prior = build_prior(images, masks)
    stems = [f"c{i}" for i in range(len(images))]
    data = finetune.SegData(model, stems, images, masks, prior, "box")
    data.embeddings = None
    args = argparse.Namespace(train="all", batch_size=5, box_shift=0.0, prior_box_fraction=0.0,
                              loss="dicebce")
    params = finetune._set_trainable(model, "all")
    optimizer = torch.optim.Adam(params, lr=1e-3)
    device = torch.device("cpu")
    before = finetune.evaluate_losses(model, data, device, True, "gt", "dicebce", 10)[0]
    finetune.train_epoch(model, data, optimizer, device, args, torch.Generator().manual_seed(0))
    after = finetune.evaluate_losses(model, data, device, True, "gt", "dicebce", 10)[0]
    assert after < before - 1e-4
    # prompt encoder frozen
    assert not model.prompt_encoder.point_embeddings[0].weight.requires_grad


@pytest.mark.parametrize("train", ["decoder", "all"])
def test_resume_equals_uninterrupted_run(pairs, tmp_path, train):
    finetune.main(_finetune_args(pairs, tmp_path / "full", "--train", train, "--epochs", "2"))
    finetune.main(_finetune_args(pairs, tmp_path / "cut", "--train", train, "--epochs", "1"))
    finetune.main(_finetune_args(pairs, tmp_path / "cut", "--train", train, "--epochs", "2",
                                 "--resume"))
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert full["epoch"] == cut["epoch"] == 2 and full["config"] == "micro"
    for key, value in full["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    for pid, state in full["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], cut["optimizer"]["state"][pid]["exp_avg"])
    assert ((tmp_path / "full" / "curves.csv").read_text()
            == (tmp_path / "cut" / "curves.csv").read_text())
    # the decoder changed; in decoder mode the encoder did not
    start = load_model("micro", seed=0).state_dict()
    assert not torch.equal(full["model"]["mask_decoder.output_upscaling.0.weight"],
                           start["mask_decoder.output_upscaling.0.weight"])
    enc = "image_encoder.patch_embed.proj.weight"
    assert torch.equal(full["model"][enc], start[enc]) == (train == "decoder")


def test_finetune_outputs_and_checkpoint_format(pairs, tmp_path):
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "3",
                                 "--prompt", "box+points"))
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert [r["part"] for r in rows] == ["train", "val"] * 4 and rows[-1]["epoch"] == "3"
    assert set(rows[0]) == {"epoch", "part", "loss", "dice_loss", "bce_loss"}
    best = torch.load(out / "best.pt", weights_only=True)
    assert {"model", "config", "epoch", "optimizer"} <= set(best)
    val = {int(r["epoch"]): float(r["loss"]) for r in rows if r["part"] == "val"}
    assert best["epoch"] == min(val, key=val.get)      # best = lowest validation loss
    assert list(out.glob("embeddings_micro_*.pt"))     # encoded once, cached for evaluate
    from vendor_medsam import load_medsam
    assert load_medsam(out / "best.pt").config_name == "micro"   # the vendor loader reads it
    assert (out / "prior.json").is_file() and (out / "run_finetune.json").is_file()


def test_finetune_never_scores_the_test_part(pairs, tmp_path, monkeypatch, capsys):
    """The choice is made on validation: no epoch computes, prints or keeps a test loss; a
    last.pt that kept test rows resumes without them, and the figure skips such rows."""
    scored = []
    evaluate_part = finetune.FinetuneRun.evaluate
    monkeypatch.setattr(finetune.FinetuneRun, "evaluate",
                        lambda run, part: scored.append(part) or evaluate_part(run, part))
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "1"))
    assert "test" not in scored and {"train", "val"} <= set(scored)
    assert " test " not in capsys.readouterr().out
    last = torch.load(out / "last.pt", weights_only=True)      # as an older run kept it
    last["curves"] += [[e, "test", 0.5, 0.5, 0.5] for e in (0, 1)]
    torch.save(last, out / "last.pt")
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "2", "--resume"))
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert [(r["epoch"], r["part"]) for r in rows] == [
        (str(e), part) for e in range(3) for part in ("train", "val")]
    from cxrseg import figures
    old = tmp_path / "old_curves.csv"
    old.write_text((out / "curves.csv").read_text() + "1,test,0.5,0.5,0.5\n")
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.extend(
        line.get_label() for ax in fig.axes for line in ax.get_lines()
        if not line.get_label().startswith("_")))      # not the best epoch's line
    figures.plot_loss_curves(old, tmp_path / "curves.png")
    assert set(drawn) == {"train", "val"}


def test_evaluate_sweeps_thresholds_on_val_and_adds_zero_shot(pairs, tmp_path):
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "1"))
    evaluate.main(["--images", str(pairs / "images"), "--masks", str(pairs / "masks"),
                   "--splits", str(pairs / "seg" / "splits.csv"),
                   "--checkpoint", str(out / "best.pt"),
                   "--zero-shot", "micro", "--out", str(out / "eval.csv"), "--device", "cpu"])
    rows = list(csv.DictReader(open(out / "eval.csv")))
    assert set(evaluate.EVAL_COLUMNS) <= set(rows[0])
    for name in (str(out / "best.pt"), "micro"):
        mine = [r for r in rows if r["checkpoint"] == name]
        assert [r["part"] for r in mine] == ["val"] * len(evaluate.SWEEP) + ["test"]
        n = len(evaluate.SWEEP)
        val = {r["threshold"]: float(r["dice"]) for r in mine[:n]}
        assert mine[n]["threshold"] == max(val, key=lambda t: (val[t], -float(t)))
        for r in mine:
            assert 0 <= float(r["dice"]) <= 1 and 0 <= float(r["iou"]) <= float(r["dice"]) + 1e-9
    per_image = list(csv.DictReader(open(out / "eval_per_image.csv")))
    assert len(per_image) == 2 * 4     # 2 checkpoints x (2 val + 2 test)
    record = json.loads((out / "done_evaluate.json").read_text())
    assert record["threshold_tolerance"] == 0.0 and record["prompting"]["refine"] == 0
    # with a tolerance as wide as the range of validation Dice, the lowest threshold is taken
    evaluate.main(["--images", str(pairs / "images"), "--masks", str(pairs / "masks"),
                   "--splits", str(pairs / "seg" / "splits.csv"),
                   "--checkpoint", str(out / "best.pt"), "--threshold-tolerance", "0.999",
                   "--out", str(out / "eval.csv"), "--device", "cpu"])
    test = [r for r in csv.DictReader(open(out / "eval.csv")) if r["part"] == "test"]
    assert float(test[0]["threshold"]) == min(evaluate.SWEEP)
    assert json.loads((out / "done_evaluate.json").read_text())["threshold_tolerance"] == 0.999


def test_evaluate_scores_the_masks_that_predict_makes_with_a_refine_pass(pairs, tmp_path,
                                                                         monkeypatch):
    """A refine pass takes its box from the mask at the threshold: evaluate's per-image Dice at
    the chosen threshold is the Dice of the mask predict writes with the evaluated recipe."""
    from cxrseg.losses import dice_iou
    from cxrseg.pairs import read_image
    asked, real = [], evaluate.segment

    def recording(*args, **kwargs):
        asked.append(kwargs["threshold"])
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluate, "segment", recording)
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "1"))
    evaluate.main(["--images", str(pairs / "images"), "--masks", str(pairs / "masks"),
                   "--splits", str(pairs / "seg" / "splits.csv"),
                   "--checkpoint", str(out / "best.pt"), "--box-source", "prior",
                   "--refine", "1", "--fill-holes", "--thresholds", "0.35", "0.45", "0.6",
                   "--out", str(out / "eval.csv"), "--device", "cpu"])
    # each candidate was scored with refine boxes from its own mask, as predict makes them
    assert sorted(set(asked)) == [0.35, 0.45, 0.6]
    rows = list(csv.DictReader(open(out / "eval_per_image.csv")))
    predict.main(["--images", str(pairs / "images"), "--segmenter", str(out),
                  "--out", str(tmp_path / "masks"), "--device", "cpu"])
    for r in rows:
        made = read_image(tmp_path / "masks" / "raw" / f"{r['stem']}.png") > 0
        truth = read_image(pairs / "masks" / f"{r['stem']}.png") > 0
        assert dice_iou(made, truth)[0] == pytest.approx(float(r["dice"]), abs=1e-6), r["stem"]


def test_the_threshold_sweep_picks_the_best_dice_or_the_lowest_within_the_tolerance():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 1
    prob = np.where(mask, 0.8, 0.0)
    prob[0, :] = 0.62            # false positives that only thresholds above 0.62 remove
    best, sweep = evaluate.sweep_threshold(lambda t: [prob], [mask])
    assert best == 0.65 and len(sweep) == 9 and min(t for t, _ in sweep) == 0.3
    # the row of false positives costs Dice 1 - 36 / 41 = 0.122: a tolerance above it takes 0.3
    assert evaluate.sweep_threshold(lambda t: [prob], [mask], tolerance=0.13)[0] == 0.3
    assert evaluate.sweep_threshold(lambda t: [prob], [mask], tolerance=0.1)[0] == 0.65
    # a faint lung (0.42) beside fainter false positives (0.32): 0.35 and 0.40 are perfect, and
    # the lower one is taken (it keeps more lung when an image is fainter still)
    prob = np.where(mask, 0.42, 0.0)
    prob[0, :] = 0.32
    assert evaluate.sweep_threshold(lambda t: [prob], [mask])[0] == 0.35


def test_the_threshold_rule_compares_dice_as_eval_csv_stores_it():
    from cxrseg.threshold_rule import choose_threshold
    dice = {0.3: 0.940, 0.4: 0.944, 0.5: 0.946, 0.6: 0.941}
    assert choose_threshold(dice, 0.0) == 0.5
    assert choose_threshold(dice, 0.005) == 0.4     # the lowest within 0.005 of the best
    assert choose_threshold({0.3: 0.9, 0.5: 0.9}, 0.0) == 0.3   # ties to the lower threshold
    # equal at eval.csv's 6 decimals: a tie, as predict will read them back
    assert choose_threshold({0.3: 0.9000001, 0.5: 0.9000002}) == 0.3
    assert choose_threshold({0.3: 0.941, 0.5: 0.946}, 0.005) == 0.3   # exactly at the edge
    with pytest.raises(ValueError, match="no candidate"):
        choose_threshold({})


def test_predict_writes_uint8_masks_and_index(pairs, tmp_path):
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "1"))
    from cxrseg.pairs import read_image
    files = sorted((pairs / "images").iterdir())
    np.save(tmp_path / "images.npy", np.stack([read_image(f) for f in files]))
    index_lines = "".join(f"{i},{f.name}\n" for i, f in enumerate(files))
    (tmp_path / "index.csv").write_text("row,image\n" + index_lines)
    predict.main(["--images", str(tmp_path / "images.npy"), "--index", str(tmp_path / "index.csv"),
                  "--checkpoint", str(out / "best.pt"), "--prior", str(out / "prior.json"),
                  "--refine", "1", "--batch-size", "4",
                  "--out", str(tmp_path / "masks" / "raw.npy"), "--device", "cpu"])
    raw = np.load(tmp_path / "masks" / "raw.npy")
    assert raw.shape == (len(files), 40, 36) and raw.dtype == np.uint8
    assert set(np.unique(raw)) <= {0, 1}
    index = list(csv.DictReader(open(tmp_path / "masks" / "index.csv")))
    assert [r["image"] for r in index] == [f.name for f in files]
    prompts = list(csv.DictReader(open(tmp_path / "masks" / "prompts.csv")))
    assert len(prompts) == len(files) and float(prompts[0]["x1"]) > float(prompts[0]["x0"])
    # a folder of images of different sizes -> one PNG mask per image
    (tmp_path / "mixed").mkdir()
    Image.fromarray(np.full((30, 20), 90, np.uint8)).save(tmp_path / "mixed" / "a.png")
    Image.fromarray(np.full((25, 40, 3), 90, np.uint8)).save(tmp_path / "mixed" / "b.jpg")
    predict.main(["--images", str(tmp_path / "mixed"), "--checkpoint", str(out / "best.pt"),
                  "--prior", str(out / "prior.json"), "--out", str(tmp_path / "pngs"),
                  "--device", "cpu"])
    assert np.asarray(Image.open(tmp_path / "pngs" / "raw" / "b.png")).shape == (25, 40)
    assert np.asarray(Image.open(tmp_path / "pngs" / "m15" / "b.png")).shape == (25, 40)


def test_bad_inputs_give_clear_errors(pairs, tmp_path):
    (tmp_path / "splits.csv").write_text("stem,part\nc00,train\nnope,val\n")
    write_done(tmp_path, {}, ["splits.csv"], done="done_split.json")
    with pytest.raises(SystemExit, match=r"error: .*splits.csv.*nope"):
        finetune.main(_finetune_args(pairs, tmp_path / "o", "--epochs", "1")[:5]
                      + [str(tmp_path / "splits.csv"), "--checkpoint", "micro",
                         "--out", str(tmp_path / "o")])
    np.save(tmp_path / "s.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(SystemExit, match=r"error: .*s.npy.*needs --index"):
        predict.main(["--images", str(tmp_path / "s.npy"), "--checkpoint", "micro",
                      "--prior", "x.json", "--out", str(tmp_path / "raw.npy")])
    (tmp_path / "index.csv").write_text("row,image\n0,a\n1,b\n")
    with pytest.raises(SystemExit, match=r"error: .*missing.json: prior file not found"):
        predict.main(["--images", str(tmp_path / "s.npy"), "--index", str(tmp_path / "index.csv"),
                      "--checkpoint", "micro", "--prior", str(tmp_path / "missing.json"),
                      "--out", str(tmp_path / "raw.npy")])
    torch.save({"model": {"x": torch.zeros(1)}, "config": "micro"}, tmp_path / "bad.pt")
    with pytest.raises(SystemExit, match=r"error: .*bad.pt"):
        evaluate.main(["--images", str(pairs / "images"), "--masks", str(pairs / "masks"),
                       "--checkpoint", str(tmp_path / "bad.pt"),
                       "--out", str(tmp_path / "eval.csv")])


def test_figures_from_a_small_run(pairs, tmp_path):
    from cxrseg import figures, postprocess
    from cxrseg.pairs import read_image
    out = tmp_path / "seg"
    finetune.main(_finetune_args(pairs, out, "--train", "decoder", "--epochs", "1"))
    files = sorted((pairs / "images").iterdir())[:3]
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "images.npy", np.stack([read_image(f) for f in files]))
    index_lines = "".join(f"{i},{f.name}\n" for i, f in enumerate(files))
    (cache / "index.csv").write_text("row,image\n" + index_lines)
    predict.main(["--images", str(cache / "images.npy"), "--index", str(cache / "index.csv"),
                  "--checkpoint", str(out / "best.pt"), "--prior", str(out / "prior.json"),
                  "--out", str(tmp_path / "masks" / "raw.npy"), "--device", "cpu"])
    postprocess.main(["--masks", str(tmp_path / "masks" / "raw.npy"),
                      "--index", str(cache / "index.csv"),
                      "--erode", "1", "--out", str(tmp_path / "masks")])
    figures.main(["--seg", str(out), "--cache", str(cache), "--masks", str(tmp_path / "masks"),
                  "--out", str(tmp_path / "fig")])
    for name in ("seg_loss_curves.png", "mask_panels.png"):
        assert Image.open(tmp_path / "fig" / name).size[0] > 500
