"""Fine-tune MedSAM / LiteMedSAM for lung segmentation -> seg/best.pt, last.pt, curves.csv,
prior.json.

Loss: the mean of soft Dice loss and BCE on the low-resolution logits (`--loss dicefocal`: focal
instead of BCE). `--train all` trains the image encoder and the mask decoder (prompt encoder
frozen, as MedSAM does); `--train decoder` trains the mask decoder only, on image embeddings
computed once and cached (the encoder dominates CPU time). Adam; early stopping on the validation
mean loss; the best epoch (epoch 0 = the checkpoint before fine-tuning) is kept in best.pt.
Losses are computed, printed and kept (curves.csv) for the training and validation parts only:
the choice is made on validation, and the test part is first scored by cxrseg.evaluate, on
best.pt after the choice.
`--resume` continues from last.pt and ends in the same state as an uninterrupted run; it refuses a
missing last.pt and one written with other settings (all flags that alter the result but --epochs
and --patience, the starting checkpoint by content and the image and mask files of each part by
content; cxrstats.foundation.checkpoints).
`done_finetune.json` is written last: evaluate and predict read best.pt only when it lists it.
It also holds the sha256 of curves.csv, prior.json and shape_prior.json (CONTENT_FILES,
`cxrstats.foundation.fileio.content_facts`), which their readers compare with the file they read
(the report's summary, cxrseg.figures, a segmenter folder's prior, the post-processing's shape
check); best.pt is read by its content already (cxrseg.engine.checkpoint_id).

`--extent field|full` (default field) declares the lung convention of the training masks: the
visible lung field or the whole lung (cxrstats.foundation.extent). The segmenter learns it, so it
is stored in best.pt / last.pt (`settings`; --resume refuses another), run_finetune.json and
done_finetune.json, and every mask the segmenter makes carries it (cxrseg.engine.checkpoint_extent).
Empty training masks are listed in a warning; all of them empty is an error.

Prompts while training: the ground-truth box shifted by up to `--box-shift` model-input pixels per
coordinate, or, with probability `--prior-box-fraction`, the prior box (from the average training
mask, also shifted) so that the model learns to work from the box it will get at inference.

`--augment opacity whiteout photometric letterbox` adds `--augment-copies` (1..16, default 1) seeded
augmented copies of each training image (cxrseg.augmented_copies) as extra training rows; they are
encoded once and cached. `--augment-copies` without `--augment` is refused (it would do nothing).

Every pair of every dataset given must have a row in --splits, and every row a pair: a dataset the
split file does not know is refused, not left out.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cxrstats.foundation.argtypes import Parser, float_range, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, begin_run, content_facts, read_done,
                                        write_csv, write_done, write_run_json)
from vendor_medsam.checkpoint import check_state_dict, split_checkpoint
from vendor_medsam.configs import CONFIGS
from cxrstats.foundation.device import (add_precision_argument, precision_autocast, prepare_device,
                                        resolve_precision)
from vendor_medsam.transforms import InputFrame

from .augmented_copies import AUGMENTATIONS, augmented_copies
from cxrstats.foundation.checkpoints import read_resume, restoring, save_checkpoint
from cxrstats.foundation.extent import DEFAULT_EXTENT, EXTENTS
from .datasets import add_data_arguments, find_all_pairs, sources_from_args
from .early_stopping import EarlyStopping
from .engine import (Prompts, checkpoint_id, decode, embeddings_for, gt_boxes, image_prompts,
                     load_model, model_inputs)
from .losses import LOSSES, segmentation_loss
from .pairs import load_pairs, pairs_sha256
from .prompts import FRAMES, PROMPT_MODES, Prior, build_prior, perturb_boxes
from .records import FINETUNE, FINETUNE_STAGE
from .shape_qc import ShapePrior
from .split import PARTS, check_splits_match, parts_sha256, read_finished_splits

CURVE_COLUMNS = ["epoch", "part", "loss", "dice_loss", "bce_loss"]
# The parts whose losses are computed each epoch and kept in curves.csv: never the test part.
CURVE_PARTS = ("train", "val")
OUTPUTS = ["best.pt", "last.pt", "curves.csv", "prior.json", "shape_prior.json",
           "run_finetune.json"]
CONTENT_FILES = ("curves.csv", "prior.json", "shape_prior.json")  # read by later stages, by sha256
# Flags that must not change when a run is resumed (--epochs and --patience may).
RESUME_KEYS = ("train", "loss", "lr", "weight_decay", "batch_size", "prompt",
               "box_shift", "prior_box_fraction", "val_prompt", "prior_frame", "seed", "fold",
               "mask_suffix", "augment", "augment_copies", "extent")
# What last.pt must hold for --resume (besides "settings").
STATE_KEYS = ("model", "optimizer", "generator", "epoch", "best_loss", "best_epoch", "bad_epochs",
              "curves")


class SegData:
    """One part's images, masks and fixed per-image tensors in the model's frames."""

    def __init__(self, model, stems, images, masks, prior: Prior | None, prompt: str):
        self.stems, self.images, self.masks = stems, images, masks
        self.frames = [InputFrame.for_model(model, *img.shape) for img in images]
        targets = torch.stack([f.mask_to_input(m) for f, m in zip(self.frames, masks)])
        self.targets = targets[:, None]
        self.gt = image_prompts(self.frames, images, prompt, prior, gt_boxes(masks))
        self.prior = (image_prompts(self.frames, images, prompt, prior) if prior is not None
                      else None)
        self.embeddings: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.stems)


def _prompts_for_batch(data: SegData, idx: torch.Tensor, side: int, box_shift: float,
                       prior_fraction: float, generator: torch.Generator) -> Prompts:
    """Training prompts for rows `idx`: shifted GT boxes, or shifted prior boxes with probability
    prior_fraction."""
    prompts = data.gt.rows(idx)
    if prompts.boxes is None:
        return prompts
    boxes = prompts.boxes
    use_prior = torch.rand(len(idx), generator=generator) < prior_fraction
    if data.prior is not None and prior_fraction > 0:
        boxes = torch.where(use_prior[:, None], data.prior.boxes[idx], boxes)
    boxes = perturb_boxes(boxes, box_shift, side, generator)
    return Prompts(boxes, prompts.points, prompts.labels)


def _logits(model, data: SegData, idx: torch.Tensor, prompts: Prompts, device,
            train_all: bool) -> torch.Tensor:
    if train_all:
        _, x = model_inputs(model, [data.images[i] for i in idx.tolist()])
        embeddings = model.image_encoder(x.to(device))
    else:
        embeddings = data.embeddings[idx].to(device, torch.float32)
    return decode(model, embeddings, prompts, device)


def evaluate_losses(model, data: SegData, device, train_all: bool, prompt_source: str,
                    loss_kind: str, batch_size: int,
                    precision: str = "fp32") -> tuple[float, float, float]:
    """Mean (loss, dice_loss, bce_or_focal) over a part with deterministic prompts (GT or prior
    box). The network runs under `precision` (resolved); the losses in float32."""
    if len(data) == 0:
        return float("nan"), float("nan"), float("nan")
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    source = data.prior if prompt_source == "prior" else data.gt
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            with precision_autocast(device, precision):
                logits = _logits(model, data, idx, source.rows(idx), device, train_all)
            logits = logits.float()
            parts = segmentation_loss(logits, data.targets[idx].to(device), loss_kind)
            totals += torch.stack([p.sum() for p in parts]).double().cpu()
    return tuple((totals / len(data)).tolist())


def _set_trainable(model, train: str) -> list[torch.nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [model.mask_decoder] + ([model.image_encoder] if train == "all" else [])
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _train_mode(model, train: str) -> None:
    # Only the mask decoder (and the encoder with --train all) is in training mode; BatchNorm in
    # LiteMedSAM's encoder keeps its running statistics (tiny batches would ruin them).
    model.eval()
    model.mask_decoder.train()


def train_epoch(model, data: SegData, optimizer, device, args, generator: torch.Generator,
                precision: str = "fp32") -> tuple[float, float, float]:
    """One pass over the training part in a seeded random order; returns the mean training
    losses. The forward pass runs under `precision` (resolved); losses, gradients of the float32
    master weights and Adam's state stay float32."""
    _train_mode(model, args.train)
    train_all = args.train == "all"
    order = torch.randperm(len(data), generator=generator)
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(data), args.batch_size):
        idx = order[start:start + args.batch_size]
        prompts = _prompts_for_batch(data, idx, model.img_size, args.box_shift,
                                     args.prior_box_fraction, generator)
        with precision_autocast(device, precision):
            logits = _logits(model, data, idx, prompts, device, train_all)
        logits = logits.float()
        loss, dice, second = segmentation_loss(logits, data.targets[idx].to(device), args.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
        sums = torch.stack([loss.detach().sum(), dice.detach().sum(), second.detach().sum()])
        totals += sums.double().cpu()
    return tuple((totals / len(data)).tolist())


def resume_settings(args, model, parts: dict[str, str], precision: str = "fp32",
                    content: dict | None = None) -> dict:
    """The settings a resumed run must share with the run it continues (all that alter the
    result but --epochs and --patience): the flags, the model config, the resolved precision, a
    hash of the stems per part, and what it reads by content (`content_settings`)."""
    return {**{k: getattr(args, k) for k in RESUME_KEYS}, "config": model.config_name,
            "precision": precision, "data": parts_sha256(parts), **(content or {})}


def content_settings(args, pairs: dict, stems: dict[str, list[str]]) -> dict:
    """What the run reads, by content: the starting checkpoint (`checkpoint_id`,
    cxrseg.engine.checkpoint_id) and each part's image and mask files (`<part>_files`,
    cxrseg.pairs.pairs_sha256)."""
    return {"checkpoint_id": checkpoint_id(args.checkpoint, args.seed),
            **{f"{part}_files": pairs_sha256([pairs[s] for s in stems[part]]) for part in PARTS}}


def read_resume_state(path: Path, settings: dict, model) -> dict:
    """last.pt for --resume (`cxrstats.foundation.checkpoints.read_resume`: missing, unreadable,
    incomplete or written with other settings is refused), whose weights must fit `model`."""
    state = read_resume(path, settings, settings_key="settings", required=STATE_KEYS,
                        stage=FINETUNE_STAGE)
    state_dict, _ = split_checkpoint(state, str(path))
    check_state_dict(model, state_dict, str(path), model.config_name)
    return state


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrseg.finetune", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrseg.finetune --images work/demo/data/seg/images "
               "--masks work/demo/data/seg/masks --splits work/by-hand/seg/splits.csv "
               "--checkpoint lite --config lite --train decoder --out work/by-hand/seg/")
    add_data_arguments(parser, images_help="folder of training images")
    parser.add_argument("--splits", required=True, help="seg/splits.csv from cxrseg.split")
    parser.add_argument("--fold", type=int_range(0), default=None,
                        help="test fold of a --folds split file")
    parser.add_argument("--checkpoint", default="lite",
                        help="lite | micro (random, tests) | checkpoint file")
    parser.add_argument("--config", default=None, choices=list(CONFIGS),
                        help="model config "
                             "(read from the file or implied by lite/micro when omitted)")
    parser.add_argument("--out", required=True, help="output folder (seg/)")
    parser.add_argument("--train", default="all", choices=["all", "decoder"],
                        help="all: image encoder + mask decoder (MedSAM); "
                             "decoder: mask decoder only")
    parser.add_argument("--loss", default="dicebce", choices=LOSSES,
                        help="mean of Dice and BCE (or focal)")
    parser.add_argument("--epochs", type=int_range(0), default=30, help="maximum epochs")
    parser.add_argument("--patience", type=int_range(1), default=5,
                        help="stop after this many epochs without val improvement")
    parser.add_argument("--batch-size", type=int_range(1), default=4, help="training batch size")
    parser.add_argument("--lr", type=float_range(0, lo_open=True), default=1e-4,
                        help="Adam learning rate")
    parser.add_argument("--weight-decay", type=float_range(0), default=0.0,
                        help="Adam weight decay (L2)")
    parser.add_argument("--prompt", default="box", choices=PROMPT_MODES, help="prompt mode")
    parser.add_argument("--box-shift", type=float_range(0), default=None,
                        help="max random shift per box coordinate in model-input pixels "
                             "(default 20 x input side / 1024, MedSAM's 20 pixels at 1024)")
    parser.add_argument("--prior-box-fraction", type=float_range(0, 1), default=0.0,
                        help="share of training prompts that use the prior box "
                             "instead of the GT box")
    parser.add_argument("--val-prompt", default="gt", choices=["gt", "prior"],
                        help="box used for validation losses: ground truth or prior")
    parser.add_argument("--prior-frame", default="content", choices=FRAMES,
                        help="prior coordinates relative to the whole image or its content box")
    parser.add_argument("--extent", default=DEFAULT_EXTENT, choices=EXTENTS,
                        help="the lung convention of the training masks: field (the visible lung "
                             "field, SCR: Montgomery, Shenzhen, JSRT) or full (the whole lung, "
                             "behind the heart and down to the costophrenic recesses); stored in "
                             "the checkpoints, and carried by every mask they make "
                             f"(default {DEFAULT_EXTENT})")
    parser.add_argument("--augment", nargs="+", default=[], choices=AUGMENTATIONS,
                        help="augmented copies of the training images (default none)")
    parser.add_argument("--augment-copies", type=int_range(1, 16), default=None,
                        help="augmented copies per training image, 1..16; needs --augment "
                             "(default 1 with --augment)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder (default: --out)")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not keep image embeddings on disk")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--check-finished", action="store_true",
                        help="train nothing: succeed only when OUT holds the finished run these "
                             "arguments make from today's files (for scripts that reuse runs)")
    parser.add_argument("--seed", type=int_range(0), default=0,
                        help="seed for the random model, order and prompts")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_precision_argument(parser)
    return parser


def warn_empty_masks(stems: dict[str, list[str]], loaded: dict, masks_dir) -> None:
    """Print a warning (count and names) for each part with empty masks; refuse when every training
    mask is empty (a wrong --masks / --mask-suffix, or masks stored in a way read as all zero)."""
    for part in PARTS:
        empty = [s for s, m in zip(stems[part], loaded[part][1]) if not m.any()]
        if part == "train" and empty and len(empty) == len(stems["train"]):
            raise ValueError(f"{masks_dir}: all {len(empty)} training masks are empty (no lung "
                             "pixels), so there is nothing to learn; "
                             "check --masks and --mask-suffix, and that the lungs are non-zero "
                             "(0/1 or 0/255) in the mask files")
        if empty:
            shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
            print(f"finetune: warning: {len(empty)} of {len(stems[part])} {part} masks are empty "
                  f"(no lung pixels): {shown}", file=sys.stderr, flush=True)


def resolve_augment_copies(args) -> None:
    """Set args.augment_copies: 1 by default with --augment, 0 without; ValueError when
    --augment-copies is given without --augment (no copies would be made)."""
    if not args.augment:
        if args.augment_copies is not None:
            raise ValueError(f"--augment-copies {args.augment_copies} needs --augment (which "
                             f"augmentations: {' '.join(AUGMENTATIONS)}); without it no copies "
                             "are made")
        args.augment_copies = 0
    elif args.augment_copies is None:
        args.augment_copies = 1


# ----------------------------------------------------------------------------- the run

@dataclass
class FinetuneRun:
    """What one fine-tuning run works with, set up once by `setup`."""
    args: argparse.Namespace
    out: Path
    device: torch.device
    precision: str                    # resolved: fp32 or bf16
    model: torch.nn.Module
    stems: dict[str, list[str]]       # per part; training stems include augmented copies
    data: dict[str, SegData]          # per part
    optimizer: torch.optim.Optimizer
    generator: torch.Generator        # training order and prompt shifts
    settings: dict                    # resume_settings, stored in every checkpoint
    resumed: dict | None              # last.pt to resume from
    started: float                    # time.time() at the start

    def evaluate(self, part: str) -> tuple[float, float, float]:
        """Mean (loss, dice_loss, bce_or_focal) of the current model on one part."""
        args = self.args
        return evaluate_losses(self.model, self.data[part], self.device, args.train == "all",
                               args.val_prompt, args.loss, args.batch_size * 4, self.precision)


@dataclass
class FinetuneState:
    """Progress and early-stopping state; saved in best.pt / last.pt, restored by --resume."""
    stopping: EarlyStopping           # on the validation mean loss, lower is better
    epoch: int = 0
    curves: list[list] = field(default_factory=list)   # [epoch, part, loss, dice, bce/focal]

    def checkpoint(self, run: FinetuneRun) -> dict:
        """The checkpoint of the model as it is now, with this state (keys: docs/DESIGN.md)."""
        model, args = run.model, run.args
        return {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "config": model.config_name, "epoch": self.epoch,
                "optimizer": run.optimizer.state_dict(), "train": args.train, "loss": args.loss,
                "stage": FINETUNE_STAGE, "settings": run.settings,
                "best_loss": self.stopping.best, "best_epoch": self.stopping.best_epoch,
                "bad_epochs": self.stopping.bad_epochs, "generator": run.generator.get_state(),
                "curves": self.curves}


def check_inputs(args, precision: str = "fp32") -> tuple:
    """Read and check the split, the pairs and the checkpoint, and the resume state; nothing is
    written. Returns (model, stems per part, (images, masks) per part, settings, resumed)."""
    resolve_augment_copies(args)
    parts = read_finished_splits(args.splits, args.fold, args.seed)
    found, dataset_of = find_all_pairs(sources_from_args(args))
    check_splits_match(parts, found, dataset_of, args.splits)
    pairs = {p.stem: p for p in found}
    model = load_model(args.checkpoint, args.config, args.seed)
    stems = {part: sorted(s for s, p in parts.items() if p == part) for part in PARTS}
    if not stems["train"] or not stems["val"]:
        raise ValueError(f"{args.splits}: needs train and val stems")
    loaded = {part: load_pairs([pairs[s] for s in stems[part]]) for part in PARTS}
    warn_empty_masks(stems, loaded, args.masks or " ".join(args.data or []))
    if args.box_shift is None:
        args.box_shift = 20 * model.img_size / 1024
    settings = resume_settings(args, model, parts, precision,
                               content_settings(args, pairs, stems))
    resumed = (read_resume_state(Path(args.out) / "last.pt", settings, model) if args.resume
               else None)
    return model, stems, loaded, settings, resumed


def check_finished(argv: list[str]) -> dict:
    """The completion record of the finished run in argv's --out, when that run is what argv would
    make now: its outputs are the bytes its record vouches for, it ran the same --epochs and
    --patience, and its last.pt holds the settings and the content (split, image and mask files,
    starting checkpoint) that --resume compares. ValueError or IncompleteRunError naming the file
    otherwise. For scripts that reuse a finished run by its folder; nothing is written."""
    args = build_parser().parse_args(argv)
    args.resume = True
    record = read_done(args.out, FINETUNE, what="fine-tuning run")
    ran = record.get("arguments", {})
    changed = {k: (ran.get(k), getattr(args, k)) for k in ("epochs", "patience")
               if ran.get(k) != getattr(args, k)}
    if changed:
        raise ValueError(f"{Path(args.out) / FINETUNE}: a run with other settings {changed} "
                         "(recorded, given)")
    check_inputs(args, resolve_precision(args.precision, prepare_device(args.device)))
    return record


def setup(args) -> FinetuneRun:
    """Check every input and, for --resume, load last.pt's states into the model, Adam and the
    generator; then commit to the run (`begin_run`: nothing is written or removed before all of
    this passes): priors, augmented copies, per-part data, cached embeddings for --train
    decoder."""
    started = time.time()
    out = Path(args.out)
    device = prepare_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, stems, loaded, settings, resumed = check_inputs(args, precision)
    model.to(device)
    optimizer = torch.optim.Adam(_set_trainable(model, args.train), lr=args.lr,
                                 weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    if resumed is not None:
        with restoring(out / "last.pt"):
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            generator.set_state(resumed["generator"])
    begin_run(out, OUTPUTS, done=FINETUNE, resume=args.resume)

    prior = build_prior(*loaded["train"], frame=args.prior_frame)
    prior.save(out / "prior.json")
    ShapePrior.from_masks(*loaded["train"]).save(out / "shape_prior.json")
    if args.augment:
        extra = augmented_copies(stems["train"], *loaded["train"], args.augment,
                                 args.augment_copies, args.seed)
        stems["train"] = stems["train"] + extra[0]
        loaded["train"] = (loaded["train"][0] + extra[1], loaded["train"][1] + extra[2])
        print(f"finetune: {len(extra[0])} augmented training copies ({' '.join(args.augment)})")
    data = {part: SegData(model, stems[part], *loaded[part], prior, args.prompt) for part in PARTS}
    if args.train == "decoder":
        cache_embeddings(model, data, device, None if args.no_cache else args.cache_dir or out,
                         precision)
    return FinetuneRun(args, out, device, precision, model, stems, data, optimizer, generator,
                       settings, resumed, started)


def cache_embeddings(model, data: dict[str, SegData], device, cache_dir,
                     precision: str = "fp32") -> None:
    """Encode every part's images once (reusing `cache_dir`'s cache) and hand each part its
    rows: --train decoder trains on these; the test part's are only cached, for cxrseg.evaluate."""
    stems = [s for part in PARTS for s in data[part].stems]
    images = [img for part in PARTS for img in data[part].images]
    embeddings = embeddings_for(model, images, stems, device, cache_dir=cache_dir,
                                precision=precision)
    offset = 0
    for part in PARTS:
        data[part].embeddings = embeddings[offset:offset + len(data[part])]
        offset += len(data[part])


def restore(run: FinetuneRun) -> FinetuneState:
    """The progress and early-stopping state in last.pt for --resume; else epoch 0, the
    checkpoint before fine-tuning, evaluated and saved as best.pt, so best.pt is never worse on
    validation than the start."""
    patience = run.args.patience
    if run.resumed is None:
        curves = [[0, part, *run.evaluate(part)] for part in CURVE_PARTS]
        val_loss = curves[CURVE_PARTS.index("val")][2]
        state = FinetuneState(EarlyStopping(patience, higher_is_better=False, best=val_loss),
                              curves=curves)
        save_checkpoint(run.out / "best.pt", state.checkpoint(run))
        print(f"finetune: epoch 0 (before fine-tuning) val loss {val_loss:.4f}")
        return state
    saved = run.resumed  # its states are in the model, Adam and the generator (`setup`)
    stopping = EarlyStopping(patience, higher_is_better=False, best=saved["best_loss"],
                             best_epoch=saved["best_epoch"], bad_epochs=saved["bad_epochs"])
    state = FinetuneState(stopping, saved["epoch"], curve_rows(saved["curves"]))
    print(f"finetune: resumed from {run.out / 'last.pt'} at epoch {state.epoch} "
          f"(best {stopping.best:.4f} at epoch {stopping.best_epoch})")
    return state


def run_epoch(run: FinetuneRun, state: FinetuneState) -> None:
    """One epoch: train, evaluate validation, early stopping, save, print a line."""
    args = run.args
    state.epoch += 1
    t0 = time.time()
    train_losses = train_epoch(run.model, run.data["train"], run.optimizer, run.device, args,
                               run.generator, run.precision)
    val = run.evaluate("val")
    improved = record_epoch(state, train_losses, val)
    save_epoch(run, state, improved)
    print(f"finetune: epoch {state.epoch}/{args.epochs} train {train_losses[0]:.4f} "
          f"val {val[0]:.4f}{' *best' if improved else ''} "
          f"({time.time() - t0:.1f} s)", flush=True)


def record_epoch(state: FinetuneState, train: tuple, val: tuple) -> bool:
    """Add the epoch's mean training and validation losses to the curves and update early
    stopping on the validation loss; returns whether it improved."""
    state.curves += [[state.epoch, "train", *train], [state.epoch, "val", *val]]
    return state.stopping.update(state.epoch, val[0])


def curve_rows(saved: list) -> list[list]:
    """The curves of a resumed last.pt, its rows of CURVE_PARTS only (a last.pt that kept test
    losses per epoch resumes without them)."""
    return [list(r) for r in saved if r[1] in CURVE_PARTS]


def save_epoch(run: FinetuneRun, state: FinetuneState, improved: bool) -> None:
    """best.pt when validation improved, last.pt and curves.csv after every epoch."""
    checkpoint = state.checkpoint(run)
    if improved:
        save_checkpoint(run.out / "best.pt", checkpoint)
    save_checkpoint(run.out / "last.pt", checkpoint)
    write_curves(run.out, state.curves)


def finish(run: FinetuneRun, state: FinetuneState) -> None:
    """last.pt when no epoch ran (--epochs 0: the starting checkpoint), curves.csv, the
    provenance and, last, done_finetune.json."""
    args, out, stopping = run.args, run.out, state.stopping
    if stopping.stopped:
        print(f"finetune: early stop, no val improvement for {args.patience} epochs")
    if state.epoch == 0:
        save_checkpoint(out / "last.pt", state.checkpoint(run))
    write_curves(out, state.curves)
    seconds = time.time() - run.started
    print(f"finetune: best epoch {stopping.best_epoch} (val loss {stopping.best:.4f}); "
          f"{seconds:.0f} s -> {out}/best.pt")
    write_run_json(out, args, name="run_finetune.json", seconds=seconds, device=str(run.device),
                   precision=run.precision, extent=args.extent, best_epoch=stopping.best_epoch,
                   best_val_loss=stopping.best,
                   n={p: len(run.stems[p]) for p in PARTS})
    write_done(out, args, OUTPUTS, done=FINETUNE, best_epoch=stopping.best_epoch,
               epochs=state.epoch, precision=run.precision, extent=args.extent,
               **content_facts(out, CONTENT_FILES))


def write_curves(out: Path, curves: list[list]) -> None:
    """curves.csv: one row per epoch and part, losses to 6 decimals."""
    write_csv(out / "curves.csv", CURVE_COLUMNS,
              [[r[0], r[1]] + [f"{v:.6f}" for v in r[2:]] for r in curves])


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.check_finished:
            check_finished(sys.argv[1:] if argv is None else argv)
            print(f"finetune: {args.out} holds the finished run these arguments make; kept")
            return
        run = setup(args)
        state = restore(run)
        while state.epoch < args.epochs and not state.stopping.stopped:
            run_epoch(run, state)
        finish(run, state)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
