"""Train one classifier run of the study (backbone x input x split) and write its predictions.

The study's recipe is the default: BCE with logits on the 5 findings, Adam lr 1e-4, batch 4, up to
30 epochs, early stopping on validation macro AUROC, flips / +-7 degree rotations / +-10% intensity
done on whole batches on the device. The checkpoint with the best validation macro AUROC is kept; at
the end the validation set (training input) and the test set (evaluation input) are predicted once
with it, and best-F1 thresholds are tuned on validation only. Macro AUROC and the thresholds are
`cxrstats.study`'s, the same functions the report uses. What other modules do as training does
(model input, one optimizer step, predictions over rows) is `cxrcls.training`; the split's images,
labels and rows come from `cxrcls.split_data`.

Macro AUROC is the mean over the findings that have both classes in the validation set; findings
with one class there are skipped (a run whose validation set has no such finding is refused at the
start). A model that diverged (NaN validation logits) scores NaN, no improvement; a run where no
epoch scored a number has no best.pt and stops with an error naming its folder.

Inputs must be finished stages: cohort/done.json, cache/done.json, and for masked inputs the mask
stage's record (see `cxrcls.inputs`); done.json's `inputs` holds, per input stage read, what made it
and what it holds (`cxrstats.foundation.fileio.input_identity`: `arguments_hash`, and
`content_sha256` when that stage's record has one; a mask stage's record by its arguments hash
alone, `cxrstats.results.mask_record_identity`, and `mask_sha256` the bytes of each mask file
read, which must be those the mask stage's record vouches for). A fresh run first removes the run
folder's old completion record and outputs (`cxrstats.foundation.fileio.begin_run`), and writes
`done.json` last, after every output: a run killed half-way never leaves old predictions beside
new weights looking finished.

Resuming (`--resume`) restores model, optimizer, augmentation RNG, early-stopping state and history
from last.pt (written every --save-every seconds, at each improvement just before best.pt, and at
the end); the batches of an epoch depend only on (seed, epoch), so a resumed run ends exactly where
an uninterrupted one does. A resume first writes best.pt again from last.pt when a kill came between
the two, and refuses a best.pt that is not of last.pt's best epoch. A missing last.pt, or one saved
with other settings (RESUME_KEYS; `cxrstats.foundation.checkpoints`) or over other inputs (last.pt's
config holds the inputs record that done.json gets: `inputs`, `mask_sha256`; an input whose
arguments hash, or recorded content id, differs now, a mask file whose bytes do: those, not the
mask record's arguments, identify the masks, `cxrstats.results.by_mask_bytes`), is refused.
Under `torchrun --nproc_per_node=N` the run is data-parallel (DistributedDataParallel; nccl on
CUDA, gloo on CPU; `cxrcls.distributed`), `--batch-size` is the global batch, and only rank 0 writes
files.

Outputs (runs/<arch>_<input>[_on_<eval input>]/split<K>/): best.pt, last.pt, history.csv,
val_probs.npy, test_probs.npy ((n, 5) float32), val_ids.csv, test_ids.csv, thresholds.csv,
timing.json, run.json, and last done.json.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cxrcls.augment import draw_params
from cxrcls.distributed import Dist, close_if_open
from cxrcls.inputs import InputSource, input_type, mask_file, open_input
from cxrcls.labels import FINDINGS, LABELS
from cxrcls.loader import BatchLoader
from cxrcls.models import ARCHS, Classifier, build_model
from cxrcls.split_data import load_split
from cxrcls.training import (bce, make_optimizer, optimizer_kind, predict_logits, sigmoid,
                             train_step, training_input)
from cxrcls.weights import require_imagenet
from cxrstats.foundation.checkpoints import load_checkpoint, read_resume, restoring, save_checkpoint
from cxrseg.early_stopping import EarlyStopping
from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, changed_identity, content_facts,
                                        current_sha256, input_identity, read_done, save_npy,
                                        write_csv, write_done, write_json, write_run_json)
from cxrstats.foundation.progress import Progress, format_seconds
from cxrstats.study import macro_auroc, tune_thresholds
from cxrstats.results import by_mask_bytes, mask_record_identity
from cxrstats.foundation.device import add_precision_argument, resolve_precision

# Settings that must not change when a run is resumed (the rest, e.g. --epochs, may).
RESUME_KEYS = ("arch", "train_input", "split", "seed", "batch_size", "lr", "image_size",
               "freeze_backbone", "no_augment", "overlay_thickness")
# What last.pt holds besides the settings ("config"): weights, optimizer, RNGs and the State.
STATE_KEYS = ("epoch", "best_metric", "best_epoch", "bad_epochs", "history", "stopped_early",
              "train_seconds")
LAST_KEYS = ("model", "optimizer", "aug_rng", "torch_rng", *STATE_KEYS)
OUTPUTS = ("best.pt", "last.pt", "history.csv", "val_probs.npy", "test_probs.npy", "val_ids.csv",
           "test_ids.csv", "thresholds.csv", "timing.json", "run.json")
DONE = "done.json"
# The files done.json vouches for by content (their sha256, `content_facts`), which every reader
# checks (`read_done`): all but last.pt, which only --resume reads, under its own checks.
CONTENT_FILES = tuple(name for name in OUTPUTS if name != "last.pt")


def run_folder(work: str | Path, arch: str, train_input: str, eval_input: str, split: int) -> Path:
    """runs/<arch>_<train>/split<K>, or runs/<arch>_<train>_on_<eval>/split<K> when they differ."""
    name = f"{arch}_{train_input}" + (f"_on_{eval_input}" if eval_input != train_input else "")
    return Path(work) / "runs" / name / f"split{split}"


# ----------------------------------------------------------------------------- the run

@dataclass
class TrainingRun:
    """What one training run works with, set up once by `setup`."""
    args: argparse.Namespace
    ctx: Dist
    out: Path
    names: list[str]                  # cohort image names, row i = cache row i
    labels6: np.ndarray               # (N, 6) uint8 0/1 in LABELS order
    parts: dict[str, np.ndarray]      # cache rows of train / val / test
    train_source: InputSource
    eval_source: InputSource
    model: Classifier
    net: torch.nn.Module              # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    aug_rng: torch.Generator
    config: dict                      # RESUME_KEYS settings and `inputs`, stored in checkpoints
    checkpoint: dict | None           # last.pt to resume from
    input_records: dict[str, dict]    # done.json's `inputs` and `mask_sha256` (check_inputs)
    precision: str = "fp32"           # resolved: bf16 autocast or float32
    channels_last: bool = False
    log: Callable = print

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def findings(self) -> np.ndarray:
        """(N, 5) float32 training targets."""
        return self.labels6[:, :len(FINDINGS)].astype(np.float32)


@dataclass
class State:
    """Progress and early-stopping state; saved in last.pt, restored by --resume."""
    stopping: EarlyStopping           # on the validation macro AUROC, higher is better
    epoch: int = 0
    history: list = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0

    def saved(self) -> dict:
        """The entries of last.pt that hold this state (STATE_KEYS)."""
        return {"epoch": self.epoch, "best_metric": self.stopping.best,
                "best_epoch": self.stopping.best_epoch, "bad_epochs": self.stopping.bad_epochs,
                "history": self.history, "stopped_early": self.stopped_early,
                "train_seconds": self.train_seconds}

    @classmethod
    def from_saved(cls, saved: dict, patience: int) -> "State":
        stopping = EarlyStopping(patience, higher_is_better=True, best=saved["best_metric"],
                                 best_epoch=saved["best_epoch"], bad_epochs=saved["bad_epochs"])
        return cls(stopping, saved["epoch"], saved["history"], saved["stopped_early"],
                   saved["train_seconds"])


def setup(args) -> tuple[TrainingRun, State]:
    """Check every input, build the model and optimizer and restore a resumed state, then commit
    to the run: clear the old outputs (unless resuming). Nothing is written or removed before all
    checks pass."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ctx = Dist(args.device)
    device = ctx.device
    precision = resolve_precision(args.precision, device)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not args.deterministic
    eval_input = args.eval_input or args.train_input
    out = Path(args.out) if args.out else run_folder(args.work, args.arch, args.train_input,
                                                     eval_input, args.split)
    log = print if ctx.main else (lambda *a, **k: None)
    names, labels6, parts, sources, input_records = check_inputs(args, eval_input, log)
    settings = {**{k: getattr(args, k) for k in RESUME_KEYS}, "precision": precision}
    config = {**settings, "inputs": input_records}
    checkpoint = resume_checkpoint(args, out / "last.pt", settings, input_records)

    torch.manual_seed(args.seed)  # same initial weights on every rank (and DDP broadcasts rank 0's)
    model = build_model(args.arch, args.weights)
    if args.freeze_backbone:
        model.freeze_backbone()
    model.to(device)
    channels_last = not args.no_channels_last  # faster convolutions on CPU too
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, args.lr, precision, distributed=ctx.world_size > 1,
                               bf16_copies=args.bf16_copies)
    if args.bf16_copies and optimizer_kind(optimizer) == "adam":
        log(f"note: --bf16-copies applies to bf16 on a CPU in one process, not to {precision} on "
            f"{device} with {ctx.world_size} process(es): plain Adam, as without it")
    net = model
    if ctx.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    run = TrainingRun(args, ctx, out, names, labels6, parts, *sources, model, net, optimizer,
                      torch.Generator().manual_seed(args.seed + 1), config, checkpoint,
                      input_records, precision=precision, channels_last=channels_last, log=log)
    state = restore(run)  # a last.pt whose states do not fit is refused here, before any removal
    rewrite_best = checkpoint is not None and best_needs_rewrite(out / "best.pt", checkpoint)

    if ctx.main:  # the point of no return: the old run's record (and outputs) go first
        begin_run(out, OUTPUTS, done=DONE, resume=checkpoint is not None)
        if checkpoint is not None:
            resume_files(run, state, rewrite_best)
    ctx.barrier()
    return run, state


def check_inputs(args, eval_input: str, log: Callable):
    """Load the split and open the inputs, refusing anything a finished run could not use.

    Returns (names, labels (N, 6), parts, (train source, eval source), input records for this
    run's done.json: `inputs`, per input stage read, its `input_identity` (`arguments_hash`, which
    settings made it, and `content_sha256`, which content it holds, when its record has one; a
    mask stage's without it: `mask_record_identity`), and `mask_sha256`, the sha256 of each mask
    file read (which masks: changed_inputs in cxrstats.results), checked by `open_input` against
    the mask stage's record and hashed once).
    """
    work = Path(args.work)
    names, labels6, parts = load_split(work, args.split)
    n_val = len(parts["val"])
    valid = [f for j, f in enumerate(FINDINGS) if 0 < labels6[parts["val"], j].sum() < n_val]
    if not valid:
        raise ValueError(f"{work / 'cohort' / 'splits.csv'}: split {args.split}'s validation set "
                         "has no finding with both classes; macro AUROC (early stopping) is "
                         "undefined")
    if len(valid) < len(FINDINGS):
        log(f"note: validation macro AUROC uses {valid} (other findings have one class there)")
    if len(parts["train"]) < args.batch_size:
        raise ValueError(f"split {args.split}: {len(parts['train'])} training images, fewer than "
                         f"one batch of {args.batch_size}")
    train_source = open_input(work / "cache", work / "masks", args.train_input)
    eval_source = (train_source if eval_input == args.train_input
                   else open_input(work / "cache", work / "masks", eval_input))
    records = {"cohort": input_identity(read_done(work / "cohort")),
               "cache": input_identity(read_done(work / "cache"))}
    mask_sha256 = {}
    for kind in sorted({args.train_input, eval_input}):
        if mask_file(kind):
            name, done = mask_file(kind)
            # open_input has checked the file's bytes against the record: not hashed again
            record = read_done(work / "masks", done, files=[name])
            records[f"masks/{done}"] = mask_record_identity(record)
            mask_sha256[f"masks/{name}"] = current_sha256(work / "masks" / name)
    return (names, labels6, parts, (train_source, eval_source),
            {"inputs": records, "mask_sha256": mask_sha256})


def resume_checkpoint(args, last_path: Path, settings: dict,
                      input_records: dict[str, dict]) -> dict | None:
    """last.pt when --resume is given, else None (a fresh run). Refused: missing, unreadable,
    incomplete or saved with other settings (`cxrstats.foundation.checkpoints.read_resume`), or
    trained on other inputs than `input_records` (check_inputs) describe."""
    if not args.resume:
        return None
    checkpoint = read_resume(last_path, settings, settings_key="config", required=LAST_KEYS,
                             stage="cxrcls.train")
    changed = changed_records(checkpoint["config"].get("inputs") or {}, input_records)
    if changed:
        raise ValueError(f"{last_path}: cannot resume: trained on other inputs than WORK holds "
                         f"now ({', '.join(changed)} differ: made again since, or another "
                         "--eval-input); start afresh without --resume")
    return checkpoint


def changed_records(saved: dict, given: dict[str, dict]) -> list[str]:
    """The entries of two input records (check_inputs: `inputs` and `mask_sha256`) that differ,
    e.g. ["cohort", "masks/m15.npy"]; an entry only one of them has differs too. `inputs` entries
    compare by `changed_identity` (other arguments, or other content where `saved` records it);
    a mask record's arguments do not count where `saved` records the mask files' bytes, which are
    compared instead (`cxrstats.results.by_mask_bytes`)."""
    changed = []
    for group, now in given.items():
        then = saved.get(group) if isinstance(saved.get(group), dict) else {}
        for name in sorted({*then, *now}):
            if group == "inputs":
                change = changed_identity(then.get(name), now.get(name))
                differs = change is not None and not (
                    change == "arguments" and by_mask_bytes(name, saved.get("mask_sha256")))
            else:
                differs = then.get(name) != now.get(name)
            if differs:
                changed.append(name)
    return changed


def restore(run: TrainingRun) -> State:
    """A fresh State, or the one in the resume checkpoint (with model, optimizer and RNGs)."""
    checkpoint = run.checkpoint
    if checkpoint is None:
        return State(EarlyStopping(run.args.patience, higher_is_better=True))
    with restoring(run.out / "last.pt"):
        run.model.load_state_dict(checkpoint["model"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        run.aug_rng.set_state(checkpoint["aug_rng"])
        torch.set_rng_state(checkpoint["torch_rng"])
        state = State.from_saved(checkpoint, run.args.patience)
    run.log(f"resuming {run.out / 'last.pt'} after epoch {state.epoch}")
    return state


def best_needs_rewrite(best_path: Path, checkpoint: dict) -> bool:
    """Whether best.pt must be written again from last.pt (`checkpoint`) before resuming.

    best.pt must be of last.pt's best epoch (none before any improvement). A run killed between
    the two writes of an improving epoch leaves a last.pt whose best epoch is its own epoch and an
    older best.pt, or none: True. Any other best.pt is not of the run last.pt continues:
    ValueError naming both."""
    best_epoch = checkpoint["best_epoch"] or None
    saved = load_checkpoint(best_path) if best_path.is_file() else {}
    epoch = saved.get("epoch") if isinstance(saved, dict) else None
    if epoch == best_epoch:
        return False
    if best_epoch == checkpoint["epoch"]:
        return True
    found = f"is of epoch {epoch}" if best_path.is_file() else "is missing"
    raise ValueError(f"{best_path} {found}, but the last.pt beside it has best epoch {best_epoch} "
                     f"and is of epoch {checkpoint['epoch']}: best.pt is not of the run last.pt "
                     "continues; start afresh without --resume")


def resume_files(run: TrainingRun, state: State, rewrite_best: bool) -> None:
    """Rank 0, resuming: history.csv and, where `rewrite_best`, best.pt as of last.pt (a kill can
    leave either ahead of last.pt, or missing)."""
    if rewrite_best:
        save_best(run, run.checkpoint["model"], state.epoch, state.stopping.best)
        run.log(f"best.pt written again from last.pt (epoch {state.epoch}, its best)")
    write_history(run.out / "history.csv", state.history)


def train_one_epoch(run: TrainingRun, loader: BatchLoader, epoch: int) -> tuple[float, int, float]:
    """One pass over the training batches; returns (mean loss, images seen, seconds), summed over
    ranks."""
    args = run.args
    start = time.time()
    progress = Progress(len(loader) * args.batch_size, f"  epoch {epoch}", "images",
                        args.log_every, log=run.log)
    run.net.train()
    loader.set_epoch(epoch)
    loss_sum, seen = 0.0, 0
    for step, batch in enumerate(loader, 1):
        params = None if args.no_augment else draw_params(run.aug_rng, batch.global_size)
        x = training_input(batch, run.train_source.kind, run.device, args.image_size,
                           args.overlay_thickness, run.channels_last, params)
        loss = train_step(run.net, run.optimizer, x, torch.from_numpy(batch.labels).to(run.device),
                          run.precision)
        loss_sum += float(loss) * len(batch.positions)
        seen += len(batch.positions)
        progress.update(step * args.batch_size,
                        f"step {step}/{len(loader)}, loss {loss_sum / seen:.4f}")
    loss_sum, seen = run.ctx.sum(loss_sum, seen)
    return loss_sum / seen, int(seen), time.time() - start


def predict(run: TrainingRun, source: InputSource, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 5) float32 logits of the current model in `rows` order; ranks share the work,
    every rank gets all."""
    args, ctx = run.args, run.ctx
    loader = BatchLoader(source, rows, run.findings, args.eval_batch_size * ctx.world_size,
                         rank=ctx.rank, world_size=ctx.world_size)
    return predict_logits(run.model, loader, source.kind, run.device, args.image_size,
                          args.overlay_thickness, run.channels_last, run.precision, ctx.gather)


def validate(run: TrainingRun, epoch: int) -> tuple[float, float]:
    """(macro AUROC, BCE loss) of the current model on the validation set (training input). A
    model that diverged (NaN logits) scores NaN, which early stopping counts as no improvement."""
    run.ctx.sync_buffers(run.model)
    val = run.parts["val"]
    logits = predict(run, run.train_source, val)
    y = run.labels6[val, :len(FINDINGS)]
    diverged = int(np.isnan(logits).any(axis=1).sum())
    if diverged:
        run.log(f"note: {run.out}: epoch {epoch}: NaN logits for {diverged} of {len(val)} "
                "validation images (the model diverged); val macro AUROC NaN, no improvement")
        return float("nan"), bce(logits, y)
    return macro_auroc(y, sigmoid(logits)).value, bce(logits, y)


def record_epoch(state: State, epoch: int, train_loss: float, val_auc: float, val_loss: float,
                 seconds: float) -> bool:
    """Add the epoch to the history and update early stopping; returns whether validation
    improved."""
    state.train_seconds += seconds
    state.epoch = epoch
    state.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                          "val_macro_auroc": val_auc, "seconds": seconds})
    improved = state.stopping.update(epoch, val_auc)
    state.stopped_early = state.stopping.stopped
    return improved


def save_epoch(run: TrainingRun, state: State, improved: bool, last_saved: float) -> float:
    """Rank 0: last.pt and then best.pt when improved, last.pt also every --save-every seconds and
    after the last epoch, history.csv. Returns when last.pt was last written.

    last.pt goes first, so best.pt is never of an epoch after last.pt's: a run killed between the
    two leaves a last.pt whose best epoch is its own, and resuming writes best.pt from it
    (best_needs_rewrite)."""
    args = run.args
    if not run.ctx.main:
        return last_saved
    weights = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    # last.pt (model + Adam state: 3x the model) costs about a second for ResNet50 on a slow disk,
    # so on short epochs it is written every --save-every seconds, at improvements and at the end.
    final = state.stopped_early or state.epoch == args.epochs
    if improved or final or time.time() - last_saved >= args.save_every:
        save_checkpoint(run.out / "last.pt", {
            "model": weights, "optimizer": run.optimizer.state_dict(),
            "aug_rng": run.aug_rng.get_state(), "torch_rng": torch.get_rng_state(),
            "config": run.config, **state.saved()})
        last_saved = time.time()
    if improved:
        save_best(run, weights, state.epoch, state.stopping.best)
    write_history(run.out / "history.csv", state.history)
    return last_saved


def save_best(run: TrainingRun, weights: dict, epoch: int, val_auc: float) -> None:
    """best.pt: the weights of the best epoch so far, its number and validation macro AUROC."""
    args = run.args
    save_checkpoint(run.out / "best.pt", {
        "model": weights, "arch": args.arch, "labels": list(FINDINGS), "input": args.train_input,
        "image_size": args.image_size or run.train_source.size, "epoch": epoch,
        "val_macro_auroc": val_auc, "config": run.config})


def final_predictions(run: TrainingRun, state: State) -> None:
    """Predict validation (training input) and test (evaluation input, read only here) with
    best.pt, tune thresholds on validation, write the outputs and, last, done.json."""
    args, ctx, out, stopping = run.args, run.ctx, run.out, state.stopping
    ctx.barrier()
    best_path = out / "best.pt"
    if not best_path.is_file():  # no epoch improved on the start, -inf: each one scored NaN
        raise ValueError(f"{out}: no best.pt: the validation macro AUROC of every epoch "
                         f"({state.epoch}) was NaN (the model diverged); see history.csv")
    run.model.load_state_dict(load_checkpoint(best_path)["model"])
    val, test = run.parts["val"], run.parts["test"]
    val_probs = sigmoid(predict(run, run.train_source, val))
    test_probs = sigmoid(predict(run, run.eval_source, test))
    if ctx.main:
        save_npy(out / "val_probs.npy", val_probs)
        save_npy(out / "test_probs.npy", test_probs)
        write_csv(out / "val_ids.csv", ["image"], [[run.names[i]] for i in val])
        write_csv(out / "test_ids.csv", ["image"], [[run.names[i]] for i in test])
        thresholds, f1, notes = tune_thresholds(val_probs, run.labels6[val])
        for note in notes:
            run.log(f"note: {note}")
        write_csv(out / "thresholds.csv", ["label", "threshold", "val_f1"],
                  [[label, repr(float(t)), f"{f:.6g}"]
                   for label, t, f in zip(LABELS, thresholds, f1)])
        device = run.device
        write_json(out / "timing.json", {
            "train_seconds": round(state.train_seconds, 3), "epochs": state.epoch,
            "best_epoch": stopping.best_epoch, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": run.precision, "optimizer": optimizer_kind(run.optimizer),
            "world_size": ctx.world_size, "stopped_early": state.stopped_early})
        write_run_json(out, args, state.train_seconds, device=str(device), precision=run.precision,
                       optimizer=optimizer_kind(run.optimizer),
                       world_size=ctx.world_size, best_epoch=stopping.best_epoch,
                       val_macro_auroc=stopping.best)
        write_done(out, args, OUTPUTS, done=DONE, epochs=state.epoch,
                   best_epoch=stopping.best_epoch, val_macro_auroc=stopping.best,
                   **run.input_records, precision=run.precision,
                   **content_facts(out, CONTENT_FILES))
        test_auc, skipped, _ = macro_auroc(run.labels6[test], test_probs)
        skipped_note = f" (skipped {skipped})" if skipped else ""
        run.log(f"done: best epoch {stopping.best_epoch} (val macro AUROC {stopping.best:.4f}); "
                f"test macro AUROC {test_auc:.4f}{skipped_note} -> {out}")
    ctx.barrier()


def train(args) -> Path:
    """One run: set up, resume (or start fresh), train epoch by epoch with early stopping on
    validation macro AUROC, then predict once with the best checkpoint."""
    run, state = setup(args)
    loader = BatchLoader(run.train_source, run.parts["train"], run.findings, args.batch_size,
                         shuffle=True, drop_last=True, seed=args.seed, rank=run.ctx.rank,
                         world_size=run.ctx.world_size)
    n = {p: len(rows) for p, rows in run.parts.items()}
    size = run.train_source.size
    run.log(f"train {args.arch} on {args.train_input} (test on {run.eval_source.kind}), split "
            f"{args.split}: {n['train']}/{n['val']}/{n['test']} images, {size}px -> "
            f"{args.image_size or size}px, device {run.device}"
            f"{f' x{run.ctx.world_size}' if run.ctx.world_size > 1 else ''}, out {run.out}")

    last_saved = time.time()
    while not state.stopped_early and state.epoch < args.epochs:
        epoch, start = state.epoch + 1, time.time()
        train_loss, seen, train_seconds = train_one_epoch(run, loader, epoch)
        val_auc, val_loss = validate(run, epoch)
        seconds = time.time() - start
        improved = record_epoch(state, epoch, train_loss, val_auc, val_loss, seconds)
        last_saved = save_epoch(run, state, improved, last_saved)
        eta = state.train_seconds / len(state.history) * (args.epochs - epoch)
        run.log(f"epoch {epoch}/{args.epochs} train_loss {train_loss:.4f} val_loss {val_loss:.4f} "
                f"val_macro_auroc {val_auc:.4f} (best {state.stopping.best:.4f} @ "
                f"{state.stopping.best_epoch}) {seconds:.1f} s, {seen / train_seconds:.1f} img/s, "
                f"ETA <= {format_seconds(eta)}"
                + ("  [early stop]" if state.stopped_early else ""), flush=True)
        run.ctx.barrier()

    final_predictions(run, state)
    run.ctx.close()
    return run.out


def write_history(path: Path, history: list[dict]) -> None:
    write_csv(path, ["epoch", "train_loss", "val_loss", "val_macro_auroc", "seconds"],
              [[h["epoch"], f"{h['train_loss']:.6f}", f"{h['val_loss']:.6f}",
                f"{h['val_macro_auroc']:.6f}", f"{h['seconds']:.3f}"] for h in history])


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m cxrcls.train --work work/demo --arch densenet121 --train-input m15 "
               "--split 0 --out work/by-hand/densenet121_m15\n"
               "  python -m cxrcls.train --work work/demo --arch resnet50 --train-input m50 "
               "--eval-input original --split 2 --out work/by-hand/r50 --resume\n"
               "  torchrun --nproc_per_node=4 -m cxrcls.train --work work/demo --arch resnet50 "
               "--train-input original --split 0 --batch-size 16 --out work/by-hand/r50_ddp")
    parser.add_argument("--work", required=True, help="work folder with cohort/, cache/, masks/")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50")
    parser.add_argument("--train-input", type=input_type, default="original",
                        help="original, overlay, or m<r>: the image cut out by masks/m<r>.npy "
                             "(study: m15, m50)")
    parser.add_argument("--eval-input", type=input_type, default=None,
                        help="input of the test set (default: the training input)")
    parser.add_argument("--split", type=int_range(0), default=0,
                        help="split number in cohort/splits.csv")
    parser.add_argument("--out", default=None,
                        help="run folder (default WORK/runs/<arch>_<input>[_on_<eval>]/split<K>)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (torchvision's, fetched once by `make weights`; never "
                             "downloaded here), 'none', or a checkpoint path")
    parser.add_argument("--epochs", type=int_range(1), default=30, help="maximum epochs")
    parser.add_argument("--patience", type=int_range(1), default=5,
                        help="stop after this many epochs without a better val macro AUROC "
                             "(the study does not state its value)")
    parser.add_argument("--batch-size", type=int_range(1), default=4, help="global batch size")
    parser.add_argument("--eval-batch-size", type=int_range(1), default=16,
                        help="per-process batch size for predictions")
    parser.add_argument("--lr", type=float_range(0, lo_open=True), default=1e-4,
                        help="Adam learning rate")
    parser.add_argument("--image-size", type=int_range(1), default=None,
                        help="resize the cached images to this side on the fly "
                             "(default: as cached)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="linear probe: train only the 5-logit head")
    parser.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    parser.add_argument("--overlay-thickness", type=int_range(1), default=2,
                        help="boundary width in cached pixels for --*-input overlay")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="no channels_last memory layout")
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms (CPU runs are deterministic "
                             "anyway)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--save-every", type=float_range(0), default=60.0,
                        help="seconds between last.pt saves (for --resume); it is always written "
                             "at improvements and after the last epoch. 0: after every epoch")
    parser.add_argument("--log-every", type=float_range(0), default=30.0,
                        help="seconds between progress lines within an epoch")
    parser.add_argument("--threads", type=int_range(0), default=0,
                        help="CPU threads for torch (0: torch's default); 1 is often fastest on a "
                             "busy shared machine")
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:i")
    add_precision_argument(parser)
    parser.add_argument("--bf16-copies", action="store_true",
                        help="bf16 on a CPU, one process: keep bf16 copies of the convolution and "
                             "linear weights between steps and update weights, Adam's state and "
                             "copies in one compiled pass (cxrcls.bf16adam): faster steps, for a "
                             "compile of a few seconds per run, so it pays on long runs; ignored "
                             "elsewhere")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.weights == "imagenet":
            require_imagenet(args.arch)  # before any work: training never downloads
        threads = torch.get_num_threads()
        try:
            train(args)
        finally:
            torch.set_num_threads(threads)  # --threads must not outlive the call (tests, notebooks)
    except USER_ERRORS as error:
        close_if_open()
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
