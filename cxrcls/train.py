"""Train one classifier run of the study (backbone x input x split) and write its predictions.

The study's recipe is the default: BCE with logits on the 5 findings, Adam lr 1e-4, batch 4, up to 30
epochs, early stopping on validation macro AUROC, flips / +-7 degree rotations / +-10% intensity done
on whole batches on the device. The checkpoint with the best validation macro AUROC is kept; at the
end the validation set (training input) and the test set (evaluation input) are predicted once with
it, and best-F1 thresholds are tuned on validation only.

Macro AUROC is the mean over the findings that have both classes in the validation set; findings with
one class there are skipped (a run whose validation set has no such finding is refused at the start).

Resuming (`--resume`) restores model, optimizer, augmentation RNG, early-stopping state and history
from last.pt (written every --save-every seconds and at the end); the batches of an epoch depend only on (seed, epoch), so a resumed run ends exactly
where an uninterrupted one does. Under `torchrun --nproc_per_node=N` the run is data-parallel
(DistributedDataParallel; nccl on CUDA, gloo on CPU), `--batch-size` is the global batch, and only
rank 0 writes files.

Outputs (runs/<arch>_<input>[_on_<eval input>]/split<K>/): best.pt, last.pt, history.csv,
val_probs.npy, test_probs.npy ((n, 5) float32), val_ids.csv, test_ids.csv, thresholds.csv,
timing.json, run.json.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from cxrcls.augment import augment, draw_params
from cxrcls.data import BatchLoader
from cxrcls.inputs import INPUTS, InputSource, compose, open_input
from cxrcls.labels import FINDINGS, LABELS, NO_FINDING
from cxrcls.models import ARCHS, Classifier, build_model
from cxrstats.fileio import atomic_path, read_csv, save_npy, write_csv, write_json, write_run_json
from cxrstats.metrics import auroc, best_f1_threshold, no_finding_score
from vendor_medsam.device import autocast, prepare_device

# Settings that must not change when a run is resumed (the rest, e.g. --epochs, may).
RESUME_KEYS = ("arch", "train_input", "split", "seed", "batch_size", "lr", "image_size",
               "freeze_backbone", "no_augment", "overlay_thickness")


def run_folder(work: str | Path, arch: str, train_input: str, eval_input: str, split: int) -> Path:
    """runs/<arch>_<train>/split<K>, or runs/<arch>_<train>_on_<eval>/split<K> when they differ."""
    name = f"{arch}_{train_input}" + (f"_on_{eval_input}" if eval_input != train_input else "")
    return Path(work) / "runs" / name / f"split{split}"


# ----------------------------------------------------------------------------- data

def load_split(work: Path, split: int) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Cohort image names, (N, 6) labels in LABELS order, and cache rows of each part of `split`."""
    cohort_path = work / "cohort" / "cohort.csv"
    index_path = work / "cache" / "index.csv"
    splits_path = work / "cohort" / "splits.csv"
    cohort = read_csv(cohort_path, required=["image", *LABELS])
    names = [r["image"] for r in cohort]
    index = [r["image"] for r in read_csv(index_path, required=["row", "image"])]
    if index != names:
        raise ValueError(f"{index_path} and {cohort_path} list different images or orders "
                         "(rebuild the cache from this cohort)")
    try:
        labels = np.array([[int(r[c]) for c in LABELS] for r in cohort], dtype=np.uint8)
    except ValueError:
        raise ValueError(f"{cohort_path}: label columns must hold 0/1") from None
    if labels.size and labels.max() > 1:
        raise ValueError(f"{cohort_path}: label columns must hold 0/1")
    row_of = {name: i for i, name in enumerate(names)}
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for r in read_csv(splits_path, required=["image", "split", "part"]):
        if r["split"] != str(split):
            continue
        if r["image"] not in row_of or r["part"] not in parts:
            raise ValueError(f"{splits_path}: row {r} names an image not in {cohort_path} "
                             "or a part other than train/val/test")
        parts[r["part"]].append(row_of[r["image"]])
    empty = [p for p, rows in parts.items() if not rows]
    if empty:
        raise ValueError(f"{splits_path}: split {split} has no {'/'.join(empty)} images")
    return names, labels, {p: np.array(sorted(rows)) for p, rows in parts.items()}


def to_model_input(images: np.ndarray, masks: np.ndarray | None, kind: str, device: torch.device,
                   image_size: int | None, thickness: int, channels_last: bool) -> torch.Tensor:
    """uint8 (B, S, S) (+ masks) -> float (B, 1, s, s) in [0, 1] on `device`: variant, then resize."""
    pin = device.type == "cuda"
    def move(a):
        t = torch.from_numpy(a)
        return (t.pin_memory() if pin else t).to(device, non_blocking=pin).unsqueeze(1)
    x = move(images).float().div_(255)
    m = move(masks) if masks is not None else None
    x = compose(x, m, kind, thickness)
    if image_size and image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training_input(batch, kind: str, device: torch.device, image_size: int | None, thickness: int,
                   channels_last: bool, params=None) -> torch.Tensor:
    """A loader Batch -> augmented model input (b, 1, s, s) on `device` (this rank's share of the
    global batch's augmentation parameters)."""
    x = to_model_input(batch.images, batch.masks, kind, device, image_size, thickness, channels_last)
    if params is not None:
        x = augment(x, params.slice(batch.offset, batch.offset + len(batch.positions)))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_step(net, optimizer, x: torch.Tensor, y: torch.Tensor, amp: bool) -> torch.Tensor:
    """One optimizer step of BCE-with-logits on (x, y); returns the (detached) mean loss."""
    with autocast(x.device, amp):
        logits = net(x)
    loss = F.binary_cross_entropy_with_logits(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ----------------------------------------------------------------------------- distributed

class Dist:
    """Rank, world size and collective helpers; a single process when not launched by torchrun."""

    def __init__(self, device_name: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = prepare_device(device_name)
        if self.world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.world_size > 1:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """Sum floats over ranks."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank
        after the last training forward), so all ranks predict with the model rank 0 saves."""
        if self.world_size > 1:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- evaluation

def macro_auroc(y: np.ndarray, p: np.ndarray) -> tuple[float, list[str]]:
    """Mean AUROC over the findings with both classes in y; returns it and the skipped findings."""
    values, skipped = [], []
    for j, label in enumerate(FINDINGS):
        try:
            values.append(auroc(y[:, j], p[:, j]))
        except ValueError:
            skipped.append(label)
    return (float(np.mean(values)) if values else float("nan")), skipped


@torch.no_grad()
def predict_logits(model, source: InputSource, rows: np.ndarray, labels: np.ndarray, args, ctx: Dist,
                   device: torch.device) -> np.ndarray:
    """(len(rows), 5) float32 logits in `rows` order; ranks share the work, everyone gets all.

    Takes the unwrapped model (not the DDP wrapper, whose forward would sync buffers and could
    wait forever for a rank whose share of the last batch is empty)."""
    model.eval()
    loader = BatchLoader(source, rows, labels, args.eval_batch_size * ctx.world_size,
                         rank=ctx.rank, world_size=ctx.world_size)
    positions, chunks = [], []
    for batch in loader:
        if len(batch.positions) == 0:
            continue
        x = to_model_input(batch.images, batch.masks, source.kind, device, args.image_size,
                           args.overlay_thickness, ctx.channels_last)
        with autocast(device, ctx.amp):
            chunks.append(model(x).float().cpu().numpy())
        positions.append(batch.positions)
    mine = (np.concatenate(positions) if positions else np.zeros(0, np.int64),
            np.concatenate(chunks) if chunks else np.zeros((0, len(FINDINGS)), np.float32))
    logits = np.zeros((len(rows), len(FINDINGS)), np.float32)
    for pos, values in ctx.gather(mine):
        logits[pos] = values
    return logits


def bce(logits: np.ndarray, y: np.ndarray) -> float:
    return float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                    torch.from_numpy(y.astype(np.float32))))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(logits)).numpy().astype(np.float32)


def thresholds_rows(y6: np.ndarray, probs: np.ndarray) -> list[list]:
    """Best-F1 threshold on validation for each finding and for No Finding = 1 - max p."""
    rows = []
    scores = [probs[:, j] for j in range(len(FINDINGS))] + [no_finding_score(probs)]
    for j, (label, score) in enumerate(zip(LABELS, scores)):
        best = best_f1_threshold(y6[:, j], score)
        rows.append([label, repr(float(best.threshold)), f"{best.f1:.6g}"])
    return rows


# ----------------------------------------------------------------------------- checkpoints

def unwrap(model) -> Classifier:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: cannot read checkpoint ({error})") from None


# ----------------------------------------------------------------------------- the run

def format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def train(args) -> Path:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ctx = Dist(args.device)
    device = ctx.device
    ctx.amp = not args.no_amp and device.type == "cuda"
    ctx.channels_last = not args.no_channels_last  # faster convolutions on CPU too
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.deterministic
    work = Path(args.work)
    eval_input = args.eval_input or args.train_input
    out = Path(args.out) if args.out else run_folder(work, args.arch, args.train_input, eval_input,
                                                     args.split)
    log = print if ctx.main else (lambda *a, **k: None)

    names, labels6, parts = load_split(work, args.split)
    findings = labels6[:, :len(FINDINGS)].astype(np.float32)
    valid = [l for j, l in enumerate(FINDINGS) if 0 < labels6[parts["val"], j].sum() < len(parts["val"])]
    if not valid:
        raise ValueError(f"{work / 'cohort' / 'splits.csv'}: split {args.split}'s validation set has "
                         "no finding with both classes; macro AUROC (early stopping) is undefined")
    if len(valid) < len(FINDINGS):
        log(f"note: validation macro AUROC uses {valid} (other findings have one class there)")
    train_source = open_input(work / "cache", work / "masks", args.train_input)
    eval_source = (train_source if eval_input == args.train_input
                   else open_input(work / "cache", work / "masks", eval_input))
    if len(parts["train"]) < args.batch_size:
        raise ValueError(f"split {args.split}: {len(parts['train'])} training images, fewer than "
                         f"one batch of {args.batch_size}")

    torch.manual_seed(args.seed)  # same initial weights on every rank (and DDP broadcasts rank 0's)
    model = build_model(args.arch, args.weights)
    if args.freeze_backbone:
        model.freeze_backbone()
    model.to(device)
    if ctx.channels_last:
        model.to(memory_format=torch.channels_last)
    # fused: one pass over the parameters per step instead of one per operation (CPU and CUDA)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                 fused=True)
    aug_rng = torch.Generator().manual_seed(args.seed + 1)

    config = {k: getattr(args, k) for k in RESUME_KEYS}
    state = {"epoch": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "stopped_early": False, "train_seconds": 0.0}
    last_path, best_path = out / "last.pt", out / "best.pt"
    if args.resume and last_path.is_file():
        checkpoint = load_checkpoint(last_path)
        changed = {k: (checkpoint["config"].get(k), v) for k, v in config.items()
                   if checkpoint["config"].get(k) != v}
        if changed:
            raise ValueError(f"{last_path}: cannot resume with different settings {changed} "
                             "(saved, given)")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        aug_rng.set_state(checkpoint["aug_rng"])
        torch.set_rng_state(checkpoint["torch_rng"])
        state.update({k: checkpoint[k] for k in state})
        log(f"resuming {last_path} after epoch {state['epoch']}")
    elif args.resume:
        log(f"note: --resume given but {last_path} does not exist; starting fresh")

    net = model
    if ctx.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = BatchLoader(train_source, parts["train"], findings, args.batch_size, shuffle=True,
                         drop_last=True, seed=args.seed, rank=ctx.rank, world_size=ctx.world_size)
    y_val6 = labels6[parts["val"]]
    log(f"train {args.arch} on {args.train_input} (test on {eval_input}), split {args.split}: "
        f"{len(parts['train'])}/{len(parts['val'])}/{len(parts['test'])} images, "
        f"{train_source.size}px -> {args.image_size or train_source.size}px, device {device}"
        f"{f' x{ctx.world_size}' if ctx.world_size > 1 else ''}, out {out}")

    last_saved = time.time()
    while not state["stopped_early"] and state["epoch"] < args.epochs:
        epoch = state["epoch"] + 1
        start = last_print = time.time()
        net.train()
        loader.set_epoch(epoch)
        loss_sum, seen = 0.0, 0
        for step, batch in enumerate(loader, 1):
            params = None if args.no_augment else draw_params(aug_rng, batch.global_size)
            x = training_input(batch, train_source.kind, device, args.image_size,
                               args.overlay_thickness, ctx.channels_last, params)
            loss = train_step(net, optimizer, x, torch.from_numpy(batch.labels).to(device), ctx.amp)
            loss_sum += float(loss) * len(batch.positions)
            seen += len(batch.positions)
            if time.time() - last_print >= args.log_every:
                last_print = time.time()
                rate = step * args.batch_size / (last_print - start)
                log(f"  epoch {epoch} step {step}/{len(loader)} loss {loss_sum / seen:.4f} "
                    f"{rate:.1f} img/s, epoch ETA {format_seconds((len(loader) - step) * args.batch_size / rate)}",
                    flush=True)
        loss_sum, seen = ctx.sum(loss_sum, seen)
        train_seconds = time.time() - start
        ctx.sync_buffers(model)
        val_logits = predict_logits(model, train_source, parts["val"], findings, args, ctx, device)
        val_auc, _ = macro_auroc(y_val6[:, :len(FINDINGS)], sigmoid(val_logits))
        val_loss = bce(val_logits, y_val6[:, :len(FINDINGS)])
        seconds = time.time() - start
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": loss_sum / seen, "val_loss": val_loss,
                                 "val_macro_auroc": val_auc, "seconds": seconds})
        improved = val_auc > state["best_metric"]
        if improved:
            state["best_metric"], state["best_epoch"], state["bad_epochs"] = val_auc, epoch, 0
        else:
            state["bad_epochs"] += 1
            state["stopped_early"] = state["bad_epochs"] >= args.patience
        if ctx.main:
            weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            if improved:
                save_checkpoint(best_path, {"model": weights, "arch": args.arch, "labels": list(FINDINGS),
                                            "input": args.train_input, "image_size": args.image_size or train_source.size,
                                            "epoch": epoch, "val_macro_auroc": val_auc, "config": config})
            # last.pt (model + Adam state: 3x the model) costs about a second for ResNet50 on a
            # slow disk, so on short epochs it is written every --save-every seconds and at the end.
            final = state["stopped_early"] or epoch == args.epochs
            if final or time.time() - last_saved >= args.save_every:
                save_checkpoint(last_path, {"model": weights, "optimizer": optimizer.state_dict(),
                                            "aug_rng": aug_rng.get_state(), "torch_rng": torch.get_rng_state(),
                                            "config": config, **state})
                last_saved = time.time()
            write_history(out / "history.csv", state["history"])
        mean_epoch = state["train_seconds"] / len(state["history"])
        log(f"epoch {epoch}/{args.epochs} train_loss {loss_sum / seen:.4f} val_loss {val_loss:.4f} "
            f"val_macro_auroc {val_auc:.4f} (best {state['best_metric']:.4f} @ {state['best_epoch']}) "
            f"{seconds:.1f} s, {seen / train_seconds:.1f} img/s, "
            f"ETA <= {format_seconds(mean_epoch * (args.epochs - epoch))}"
            + ("  [early stop]" if state["stopped_early"] else ""), flush=True)
        ctx.barrier()

    # The test set is read once, here, with the best validation checkpoint.
    ctx.barrier()
    if not best_path.is_file():
        raise ValueError(f"{best_path}: no best checkpoint (was any epoch run?)")
    model.load_state_dict(load_checkpoint(best_path)["model"])
    val_probs = sigmoid(predict_logits(model, train_source, parts["val"], findings, args, ctx, device))
    test_probs = sigmoid(predict_logits(model, eval_source, parts["test"], findings, args, ctx, device))
    if ctx.main:
        save_npy(out / "val_probs.npy", val_probs)
        save_npy(out / "test_probs.npy", test_probs)
        write_csv(out / "val_ids.csv", ["image"], [[names[i]] for i in parts["val"]])
        write_csv(out / "test_ids.csv", ["image"], [[names[i]] for i in parts["test"]])
        write_csv(out / "thresholds.csv", ["label", "threshold", "val_f1"],
                  thresholds_rows(y_val6, val_probs))
        write_json(out / "timing.json", {
            "train_seconds": round(state["train_seconds"], 3), "epochs": state["epoch"],
            "best_epoch": state["best_epoch"], "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "world_size": ctx.world_size, "stopped_early": state["stopped_early"]})
        write_run_json(out, args, state["train_seconds"], device=str(device),
                       world_size=ctx.world_size, best_epoch=state["best_epoch"],
                       val_macro_auroc=state["best_metric"])
        test_auc, skipped = macro_auroc(labels6[parts["test"], :len(FINDINGS)], test_probs)
        log(f"done: best epoch {state['best_epoch']} (val macro AUROC {state['best_metric']:.4f}); "
            f"test macro AUROC {test_auc:.4f}{f' (skipped {skipped})' if skipped else ''} -> {out}")
    ctx.barrier()
    ctx.close()
    return out


def write_history(path: Path, history: list[dict]) -> None:
    write_csv(path, ["epoch", "train_loss", "val_loss", "val_macro_auroc", "seconds"],
              [[h["epoch"], f"{h['train_loss']:.6f}", f"{h['val_loss']:.6f}",
                f"{h['val_macro_auroc']:.6f}", f"{h['seconds']:.3f}"] for h in history])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cxrcls.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m cxrcls.train --work work --arch densenet121 --train-input m15 --split 0\n"
               "  python -m cxrcls.train --work work --arch resnet50 --train-input m50 "
               "--eval-input original --split 2 --resume\n"
               "  torchrun --nproc_per_node=4 -m cxrcls.train --work work --arch resnet50 "
               "--train-input original --split 0 --batch-size 16")
    parser.add_argument("--work", required=True, help="work folder with cohort/, cache/, masks/")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50")
    parser.add_argument("--train-input", choices=INPUTS, default="original")
    parser.add_argument("--eval-input", choices=INPUTS, default=None,
                        help="input of the test set (default: the training input)")
    parser.add_argument("--split", type=int, default=0, help="split number in cohort/splits.csv")
    parser.add_argument("--out", default=None,
                        help="run folder (default WORK/runs/<arch>_<input>[_on_<eval>]/split<K>)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (torchvision download), 'none', or a checkpoint path")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs")
    parser.add_argument("--patience", type=int, default=5,
                        help="stop after this many epochs without a better val macro AUROC "
                             "(the study does not state its value)")
    parser.add_argument("--batch-size", type=int, default=4, help="global batch size")
    parser.add_argument("--eval-batch-size", type=int, default=16, help="per-process batch size "
                        "for predictions")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize the cached images to this side on the fly (default: as cached)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="linear probe: train only the 5-logit head")
    parser.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    parser.add_argument("--overlay-thickness", type=int, default=2,
                        help="boundary width in cached pixels for --*-input overlay")
    parser.add_argument("--no-amp", action="store_true", help="CUDA: no bf16 autocast")
    parser.add_argument("--no-channels-last", action="store_true", help="no channels_last memory layout")
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms (CPU runs are deterministic anyway)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--save-every", type=float, default=60.0,
                        help="seconds between last.pt saves (for --resume); it is always written "
                             "after the last epoch. 0: after every epoch")
    parser.add_argument("--log-every", type=float, default=30.0,
                        help="seconds between progress lines within an epoch")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default); 1 is often fastest on a "
                             "busy shared machine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:i")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        for flag in ("epochs", "patience", "batch_size", "eval_batch_size"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
        threads = torch.get_num_threads()
        try:
            train(args)
        finally:
            torch.set_num_threads(threads)  # --threads must not outlive the call (tests, notebooks)
    except (ValueError, FileNotFoundError) as error:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
