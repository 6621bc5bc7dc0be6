"""Where does the classifier look? Grad-CAM share of attribution inside the lungs, per finding.

For every test image of each finished run (runs/<setting>/split<k>/ with best.pt), the run's own
test input is composed exactly as training composed it (cxrcls.inputs and
cxrcls.training.to_model_input), Grad-CAM maps of one convolutional block (see below) are computed
for each of the five findings (cxrcls.gradcam), upsampled to the cached image side S, and compared
with the RAW lung mask (masks/raw.npy of a finished prediction for this cache, checked as for the
`overlay` input; the segmenter's own output, not the dilated cut-out):

    in-lung share = sum(cam * lung) / sum(cam)      chance level = lung area / image area

A model that looks where the findings are drawn (inside the lungs) has a share well above chance;
one that uses a cue outside the lungs (a marker, an electrode) has a share near or below it.
With --region-csv (a CSV naming, per image, a box in fractions of the image side, e.g. the demo's
data/nih/phantoms.csv with the spurious cue's box), the share of attribution inside each image's
box is measured too, against the box's area:

    region share = sum(cam * box) / sum(cam)        region fraction = box area / image area

Images whose map is zero everywhere (no positive attribution) have no share and are counted in
`n_zero_cam`. Masked inputs hide everything outside the dilated mask, but Grad-CAM can still put
weight there: the layer's grid is coarse and is upsampled bilinearly. The layer is the deepest block
whose grid has at least --min-grid cells a side at the run's input size (cxrcls.gradcam; 64 px
inputs: layer2 / features.denseblock2, 8 x 8; 224 px and larger: the last block), or --layer.

Writes into --out (default WORK/results):
- attribution.csv: setting, split, label, in_lung_share, chance_level, n_images, n_zero_cam,
  in_lung_share_pos, chance_level_pos, n_pos (means over the test images; *_pos over the images
  positive for that label; empty where undefined), region_share, region_fraction, n_region (means
  over the images with a --region-csv box; empty without one)
- attribution_per_image.csv: setting, split, image, label, positive, probability, in_lung_share,
  lung_fraction, region_share, region_fraction (empty where the image has no box)
- attribution.md: per setting and finding, the in-lung share (mean over splits) against chance,
  and with --region-csv the region share against the box's area
- figures/attribution_panels.png: a few test images x settings, the heat map of one finding over
  each setting's input, the raw lung outline drawn
- run_attribution.json (arguments, layers, seconds, `mask_extent`: the lung extent of the raw
  masks as masks/done_predict.json records it, cxrstats.results.masks_extent), then
  done_attribution.json last (with `mask_extent` too), naming each run used (folder under WORK,
  sha256 of its done.json; cxrstats.results.run_entry): the report shows the attribution only for
  the very runs it reports.

Runs count as finished only when their done.json is valid (cxrstats.foundation.fileio.read_done), as
in the report: an unfinished or stale run is refused, never read.
"""
from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cxrcls.gradcam import MIN_GRID, grad_cam, target_layer
from cxrcls.inputs import open_input
from cxrcls.labels import FINDINGS
from cxrcls.models import ARCHS, Classifier
from cxrcls.split_data import load_split
from cxrcls.training import to_model_input
from cxrstats.foundation.checkpoints import load_checkpoint
from cxrstats.foundation.argtypes import Parser, int_range
from cxrstats.foundation.fileio import (USER_ERRORS, IncompleteRunError, atomic_path, file_sha256,
                                        read_csv, read_done, write_csv, write_done, write_run_json)
from cxrstats.results import (ATTRIBUTION_DONE, MASKS_PREDICT_DONE, RUN_DONE, begin_results,
                              changed_inputs, masks_extent, run_entry)
from cxrstats.runs import parse_setting
from cxrstats.foundation.device import (add_precision_argument, precision_autocast, prepare_device,
                                        resolve_precision)

DONE = ATTRIBUTION_DONE
OUTPUTS = ("attribution.csv", "attribution_per_image.csv", "attribution.md",
           "figures/attribution_panels.png", "run_attribution.json")
SUMMARY_HEADER = ["setting", "split", "label", "in_lung_share", "chance_level", "n_images",
                  "n_zero_cam", "in_lung_share_pos", "chance_level_pos", "n_pos",
                  "region_share", "region_fraction", "n_region"]
PER_IMAGE_HEADER = ["setting", "split", "image", "label", "positive", "probability",
                    "in_lung_share", "lung_fraction", "region_share", "region_fraction"]
BOX = ("x0", "y0", "x1", "y1")
SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SPLIT_FOLDER = re.compile(r"^split(\d+)$")
PANEL_SIDE = 256  # panels are drawn at most this many pixels wide


# ----------------------------------------------------------------------------- finding the runs

@dataclass
class RunInfo:
    """One run to explain: its folder and how its test input is made."""
    setting: str
    split: int
    folder: Path
    arch: str
    kind: str             # the test input (eval input, else the training input)
    image_size: int | None
    thickness: int
    done_sha256: str      # of the run's done.json, as read
    note: str = ""


def find_run_folders(work: Path, settings: list[str] | None, splits: list[int] | None
                     ) -> list[tuple[str, int, Path]]:
    """(setting, split, folder) of the requested runs; every requested one must exist."""
    runs_dir = work / "runs"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no runs folder (train the classifiers first)")
    available = sorted((p.name for p in runs_dir.iterdir() if p.is_dir()),
                       key=lambda name: parse_setting(name).sort_key)  # the study's order
    for name in settings or []:
        if not SETTING_NAME.match(name):
            raise ValueError(f"--settings: {name!r} is not a setting name like resnet50_m15")
        if name not in available:
            raise FileNotFoundError(f"{runs_dir / name}: no such setting (found {available})")
    found = []
    for name in settings or available:
        folders = {int(m.group(1)): p for p in (runs_dir / name).iterdir()
                   if p.is_dir() and (m := SPLIT_FOLDER.match(p.name))}
        for k in (splits if splits is not None else sorted(folders)):
            if k not in folders:
                raise FileNotFoundError(f"{runs_dir / name / f'split{k}'}: no such run")
            found.append((name, k, folders[k]))
    if not found:
        raise FileNotFoundError(f"{runs_dir}: no runs/<setting>/split<k>/ folders")
    return found


def run_arguments(folder: Path) -> tuple[dict, str]:
    """The training arguments of a finished run, from its completion record done.json, and the
    record's sha256."""
    record = read_done(folder, RUN_DONE, what="training run")
    changed = changed_inputs(folder.parents[2], folder, record)
    if changed:
        raise IncompleteRunError(changed)
    if not isinstance(record.get("arguments"), dict):
        raise ValueError(f"{folder / RUN_DONE}: no training arguments in the completion record")
    return record["arguments"], file_sha256(folder / RUN_DONE)


def run_info(setting: str, split: int, folder: Path) -> RunInfo:
    arguments, done_sha256 = run_arguments(folder)
    arch = arguments.get("arch")
    kind = arguments.get("eval_input") or arguments.get("train_input")
    # The input name is checked by cxrcls.inputs.open_input when the run is opened.
    if arch not in ARCHS or not isinstance(kind, str) or not kind:
        raise ValueError(f"{folder}: training arguments name arch {arch!r} and input {kind!r}; "
                         f"expected an arch in {ARCHS} and an input name")
    if not (folder / "best.pt").is_file():
        raise FileNotFoundError(f"{folder / 'best.pt'}: checkpoint not found")
    return RunInfo(setting, split, folder, arch, kind, arguments.get("image_size"),
                   int(arguments.get("overlay_thickness", 2)), done_sha256)


def read_regions(path: Path, name: str) -> dict[str, tuple[float, float, float, float]]:
    """Per image, the box `<name>_x0, _y0, _x1, _y1` (fractions of the image side, x left to right,
    y top to bottom) from the CSV at `path` (column `Image Index`); rows whose four cells are
    empty have no box. ValueError naming the file and row for anything else."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: region CSV not found")
    columns = [f"{name}_{c}" for c in BOX]
    boxes = {}
    for line, row in enumerate(read_csv(path, required=["Image Index", *columns]), start=2):
        cells = [row[c].strip() for c in columns]
        if not any(cells):
            continue
        try:
            box = tuple(float(c) for c in cells)
        except ValueError:
            raise ValueError(f"{path} line {line}: {columns} must be four numbers or all empty, "
                             f"got {cells}") from None
        if not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise ValueError(f"{path} line {line}: box {box} is not 0 <= x0 < x1 <= 1 and "
                             "0 <= y0 < y1 <= 1 (fractions of the image side)")
        boxes[row["Image Index"]] = box
    return boxes


# ----------------------------------------------------------------------------- computing shares

def box_masks(boxes: np.ndarray, side: int) -> torch.Tensor:
    """boxes (B, 4) fractions (x0, y0, x1, y1), NaN rows for none -> (B, side, side) float 0/1: the
    pixels whose centre lies in the box (all zero for a NaN row)."""
    centre = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    b = torch.from_numpy(np.asarray(boxes, dtype=np.float64)).reshape(-1, 4, 1)
    inside_x = (centre >= b[:, 0]) & (centre <= b[:, 2])          # (B, side) over columns
    inside_y = (centre >= b[:, 1]) & (centre <= b[:, 3])          # (B, side) over rows
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()

def lung_shares(cams: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass inside the lungs (or any other (B, S, S) 0/1 region).

    cams (T, B, h, w) >= 0 on the model's grid, lungs (B, S, S) 0/1 -> (T, B) float64 in [0, 1], NaN
    where a map is zero everywhere. Maps are upsampled bilinearly to S x S (the grid covers the
    whole image, as the model input is the whole image resized)."""
    t, b, h, w = cams.shape
    side = lungs.shape[-1]
    up = F.interpolate(cams.reshape(t * b, 1, h, w).float(), size=(side, side), mode="bilinear",
                       align_corners=False).reshape(t, b, side, side).clamp_min_(0)
    total = up.sum(dim=(2, 3), dtype=torch.float64)
    inside = (up * lungs.to(up.dtype)).sum(dim=(2, 3), dtype=torch.float64)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.nan)


@dataclass
class Panel:
    """What one panel of the figure shows: the input, the map and the lung mask at display size."""
    image: np.ndarray      # (D, D) float in [0, 1]
    cam: np.ndarray        # (D, D) float >= 0
    lung: np.ndarray       # (D, D) 0/1
    share: float


@dataclass
class RunAttribution:
    info: RunInfo
    names: list[str]
    positive: np.ndarray          # (n, 5) 0/1
    probability: np.ndarray       # (n, 5)
    share: np.ndarray             # (5, n), NaN where the map is zero
    lung_fraction: np.ndarray     # (n,)
    region_share: np.ndarray      # (5, n), NaN where the image has no box or the map is zero
    region_fraction: np.ndarray   # (n,), NaN where the image has no box
    panels: dict[int, Panel] = field(default_factory=dict)
    seconds: float = 0.0
    layer: str = ""


def split_test_rows(work: Path, info: RunInfo, max_images: int | None, seed: int
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, cache rows and (n, 6) labels of the run's test images (a seeded subset of
    `max_images`, the same for every setting of a split); checks the run's test_ids.csv agrees."""
    names, labels6, parts = load_split(work, info.split)
    rows = parts["test"]
    ids_path = info.folder / "test_ids.csv"
    if ids_path.is_file():
        run_ids = [r["image"] for r in read_csv(ids_path, required=["image"])]
        if sorted(run_ids) != sorted(names[i] for i in rows):
            raise ValueError(f"{ids_path} lists other test images than split {info.split} of "
                             f"{work / 'cohort' / 'splits.csv'} (cohort changed since training?)")
    if max_images is not None and max_images < len(rows):
        rng = np.random.default_rng([seed, info.split])
        pick = rng.choice(len(rows), max_images, replace=False)
        rows = rows[np.sort(pick)]
    return [names[i] for i in rows], rows, labels6[rows]


def panel_positions(labels6: np.ndarray, label: int, count: int) -> list[int]:
    """Positions of the panel images: the first images positive for `label`, then others."""
    positive = [i for i in range(len(labels6)) if labels6[i, label]]
    rest = [i for i in range(len(labels6)) if not labels6[i, label]]
    return (positive + rest)[:count]


def attribute_run(work: Path, info: RunInfo, device: torch.device, args,
                  panel_at: list[int], regions: dict | None = None,
                  precision: str = "fp32") -> RunAttribution:
    """Grad-CAM shares of every test image of one run, and the panels at positions `panel_at`.
    The network's forward and backward run under `precision` (resolved); the captured layer
    output, the maps and the logits are float32."""
    start = time.time()
    names, rows, labels6 = split_test_rows(work, info, args.max_images, args.seed)
    source = open_input(work / "cache", work / "masks", info.kind)
    # The raw masks are read as the overlay input reads them: only from a finished prediction
    # (masks/done_predict.json listing raw.npy) made for this cache's rows.
    raw = open_input(work / "cache", work / "masks", "overlay").masks
    model = Classifier(info.arch)
    checkpoint = load_checkpoint(info.folder / "best.pt")
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"{info.folder / 'best.pt'}: does not fit {info.arch} ({error})") from None
    model.to(device).eval()
    image_size = checkpoint.get("image_size") or info.image_size
    side = source.size
    layer_name, layer = target_layer(model, args.layer, image_size or side, args.min_grid)

    panel_label = FINDINGS.index(args.panel_label)
    regions = regions or {}
    shares, probs, fractions, region_shares, region_fractions = [], [], [], [], []
    panels: dict[int, Panel] = {}
    display = min(side, PANEL_SIDE)
    for lo in range(0, len(rows), args.batch_size):
        batch_rows = rows[lo:lo + args.batch_size]
        images, masks = source.read(batch_rows)
        x = to_model_input(images, masks, info.kind, device, image_size, info.thickness, False)
        with precision_autocast(device, precision):
            cams, logits = grad_cam(model, layer, x, list(range(len(FINDINGS))))
        cams, logits = cams.float(), logits.float()
        lungs = torch.from_numpy(np.ascontiguousarray(raw[batch_rows])).to(device)
        shares.append(lung_shares(cams, lungs).cpu().numpy())
        probs.append(torch.sigmoid(logits).cpu().numpy())
        fractions.append(lungs.float().mean(dim=(1, 2)).double().cpu().numpy())
        boxes = np.array([regions.get(names[lo + b], (np.nan,) * 4)
                          for b in range(len(batch_rows))])
        has_box = torch.from_numpy(np.isfinite(boxes).all(axis=1)).to(device)
        region = box_masks(boxes, side).to(device)
        region_shares.append(torch.where(has_box, lung_shares(cams, region), torch.nan)
                             .cpu().numpy())
        region_fractions.append(torch.where(has_box, region.mean(dim=(1, 2)).double(), torch.nan)
                                .cpu().numpy())
        for pos in (p for p in panel_at if lo <= p < lo + len(batch_rows)):
            b = pos - lo
            shown = to_model_input(images[b:b + 1], None if masks is None else masks[b:b + 1],
                                   info.kind, device, display, info.thickness, False)
            cam = F.interpolate(cams[panel_label, b][None, None], size=(display, display),
                                mode="bilinear", align_corners=False)
            lung = F.interpolate(lungs[b][None, None].float(), size=(display, display),
                                 mode="nearest")
            panels[pos] = Panel(shown[0, 0].cpu().numpy(), cam[0, 0].clamp_min(0).cpu().numpy(),
                                lung[0, 0].cpu().numpy(), float(shares[-1][panel_label, b]))
    return RunAttribution(info, names, labels6[:, :len(FINDINGS)], np.concatenate(probs),
                     np.concatenate(shares, axis=1), np.concatenate(fractions),
                     np.concatenate(region_shares, axis=1), np.concatenate(region_fractions),
                     panels, time.time() - start, layer_name)


# ----------------------------------------------------------------------------- outputs

def _num(value: float) -> str:
    return "" if not np.isfinite(value) else repr(float(value))


def summary_rows(result: RunAttribution) -> list[list]:
    """attribution.csv rows of one run: per finding, means over the images with a defined share."""
    rows = []
    for j, label in enumerate(FINDINGS):
        defined = np.isfinite(result.share[j])
        pos = defined & (result.positive[:, j] == 1)
        boxed = np.isfinite(result.region_share[j])

        def mean(values, where):
            return float(values[where].mean()) if where.any() else float("nan")
        rows.append([result.info.setting, result.info.split, label,
                     _num(mean(result.share[j], defined)),
                     _num(mean(result.lung_fraction, defined)),
                     int(defined.sum()), int((~defined).sum()),
                     _num(mean(result.share[j], pos)), _num(mean(result.lung_fraction, pos)),
                     int(pos.sum()), _num(mean(result.region_share[j], boxed)),
                     _num(mean(result.region_fraction, boxed)), int(boxed.sum())])
    return rows


def per_image_rows(result: RunAttribution) -> list[list]:
    rows = []
    for i, image in enumerate(result.names):
        for j, label in enumerate(FINDINGS):
            rows.append([result.info.setting, result.info.split, image, label,
                         int(result.positive[i, j]), f"{result.probability[i, j]:.6g}",
                         _num(result.share[j, i]), repr(float(result.lung_fraction[i])),
                         _num(result.region_share[j, i]), _num(result.region_fraction[i])])
    return rows


def markdown(results: list[RunAttribution]) -> str:
    """Per setting (rows) and finding (columns): in-lung share x100 (mean over splits), chance."""
    settings = list(dict.fromkeys(r.info.setting for r in results))
    lines = ["# Where the classifiers look: Grad-CAM share of attribution inside the raw lung mask",
             "", "In-lung share ×100 (mean over splits of the mean over test images), chance level "
             "(lung area ÷ image area) in parentheses.", "",
             "| setting | splits | " + " | ".join(FINDINGS) + " |",
             "|:---|---:|" + "---:|" * len(FINDINGS)]
    for name in settings:
        runs = [r for r in results if r.info.setting == name]
        cells = []
        for j in range(len(FINDINGS)):
            share = [np.nanmean(r.share[j]) for r in runs if np.isfinite(r.share[j]).any()]
            chance = [r.lung_fraction[np.isfinite(r.share[j])].mean() for r in runs
                      if np.isfinite(r.share[j]).any()]
            cells.append(f"{100 * np.mean(share):.1f} ({100 * np.mean(chance):.1f})" if share
                         else "n/a")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    if any(np.isfinite(r.region_fraction).any() for r in results):
        lines += region_markdown(results, settings)
    return "\n".join(lines) + "\n"


def region_markdown(results: list[RunAttribution], settings: list[str]) -> list[str]:
    """Lines of the region table: per setting and finding, the share of attribution inside each
    image's --region-csv box x100 (mean over splits of the mean over the images with a box), the
    box's area share in parentheses."""
    lines = ["", "Share of attribution inside each image's region (--region-csv) ×100, over the "
             "test images that have one (mean over splits); region area ÷ image area in "
             "parentheses.", "",
             "| setting | images | " + " | ".join(FINDINGS) + " |",
             "|:---|---:|" + "---:|" * len(FINDINGS)]
    for name in settings:
        runs = [r for r in results if r.info.setting == name]
        count = sum(int(np.isfinite(r.region_fraction).sum()) for r in runs)
        cells = []
        for j in range(len(FINDINGS)):
            defined = [np.isfinite(r.region_share[j]) for r in runs]
            share = [np.mean(r.region_share[j][d]) for r, d in zip(runs, defined) if d.any()]
            area = [np.mean(r.region_fraction[d]) for r, d in zip(runs, defined) if d.any()]
            cells.append(f"{100 * np.mean(share):.1f} ({100 * np.mean(area):.1f})" if share
                         else "n/a")
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    return lines


def panels_figure(path: Path, results: list[RunAttribution], positions: list[int],
                  label: str) -> None:
    """Rows: panel images; columns: settings (their first requested split). Heat map over each
    setting's own input, raw lung outline in cyan, the image's in-lung share in the corner."""
    from matplotlib.figure import Figure

    columns = [r for r in results if r.panels]
    fig = Figure(figsize=(2.2 * max(len(columns), 1), 2.3 * max(len(positions), 1) + 0.4), dpi=110,
                 layout="constrained")
    axes = fig.subplots(max(len(positions), 1), max(len(columns), 1), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for c, result in enumerate(columns):
        for r, pos in enumerate(positions):
            panel, ax = result.panels[pos], axes[r, c]
            ax.imshow(panel.image, cmap="gray", vmin=0, vmax=1)
            top = panel.cam.max()
            if top > 0:
                ax.imshow(panel.cam / top, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if panel.lung.any() and not panel.lung.all():
                ax.contour(panel.lung, levels=[0.5], colors="cyan", linewidths=0.8)
            share = "n/a" if not np.isfinite(panel.share) else f"{100 * panel.share:.0f}%"
            ax.text(2, 2, share, color="white", fontsize=7, va="top",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
            if r == 0:
                ax.set_title(result.info.setting, fontsize=8)
            if c == 0:
                positive = "+" if result.positive[pos, FINDINGS.index(label)] else "-"
                ax.text(-0.04, 0.5, f"{result.names[pos]}\n{label} {positive}", fontsize=6,
                        rotation=90, ha="right", va="center", transform=ax.transAxes)
    fig.suptitle(f"Grad-CAM for {label}\nraw lung outline cyan,\nin-lung share top left",
                 fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ----------------------------------------------------------------------------- the command

def build_parser() -> Parser:
    parser = Parser(
        prog="python -m cxrcls.attribution", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m cxrcls.attribution --work work/demo "
               "--settings resnet50_original resnet50_m15 --out work/demo/results")
    parser.add_argument("--work", required=True,
                        help="work folder with cohort/, cache/, masks/, runs/")
    parser.add_argument("--settings", nargs="+", default=None,
                        help="runs/<setting> folders to explain (default: every setting)")
    parser.add_argument("--out", default=None, help="output folder (default WORK/results)")
    parser.add_argument("--splits", nargs="+", type=int_range(0), default=None,
                        help="split numbers (default: every split of each setting)")
    parser.add_argument("--max-images", type=int_range(1), default=None,
                        help="explain a seeded subset of this many test images per run "
                             "(default: all)")
    parser.add_argument("--layer", default=None,
                        help="Grad-CAM layer inside the backbone (default: the deepest block whose "
                             "grid has at least --min-grid cells a side at the run's input size)")
    parser.add_argument("--min-grid", type=int_range(1), default=MIN_GRID,
                        help="without --layer: the smallest grid side to accept (7, Grad-CAM's "
                             "ResNet grid at 224 px; 1 always takes the last block)")
    parser.add_argument("--region-csv", default=None,
                        help="CSV with `Image Index` and a box per image (fractions of the image "
                             "side) in columns NAME_x0, NAME_y0, NAME_x1, NAME_y1, empty for none; "
                             "e.g. the demo's data/nih/phantoms.csv (the spurious cue's box)")
    parser.add_argument("--region-name", default="cue",
                        help="NAME, the prefix of the --region-csv box columns")
    parser.add_argument("--panel-label", choices=FINDINGS, default="Pneumonia",
                        help="finding whose maps the panel figure shows")
    parser.add_argument("--panel-images", type=int_range(1, 12), default=4,
                        help="test images (rows) in the panel figure")
    parser.add_argument("--batch-size", type=int_range(1), default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-images subset")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:i")
    add_precision_argument(parser)
    return parser


def run(args) -> Path:
    start = time.time()
    work = Path(args.work)
    out = Path(args.out) if args.out else work / "results"
    folders = find_run_folders(work, args.settings, args.splits)
    infos = [run_info(s, k, f) for s, k, f in folders]
    regions = read_regions(Path(args.region_csv), args.region_name) if args.region_csv else {}
    device = prepare_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(args.seed)
    extent = masks_extent(work, MASKS_PREDICT_DONE)
    begin_results(out, OUTPUTS, DONE, figures=True)

    panel_split = infos[0].split
    label = FINDINGS.index(args.panel_label)
    panel_at: list[int] = []
    results = []
    for info in infos:
        if info.split == panel_split and not panel_at:
            _, _, labels6 = split_test_rows(work, info, args.max_images, args.seed)
            panel_at = panel_positions(labels6, label, args.panel_images)
        result = attribute_run(work, info, device, args,
                               panel_at if info.split == panel_split else [], regions, precision)
        results.append(result)
        shares = ", ".join(f"{f} {100 * np.nanmean(result.share[j]):.0f}%"
                           if np.isfinite(result.share[j]).any() else f"{f} n/a"
                           for j, f in enumerate(FINDINGS))
        print(f"attribution: {info.setting} split {info.split} ({info.kind}, {result.layer}): "
              f"{len(result.names)} images, in-lung share {shares} "
              f"(chance {100 * result.lung_fraction.mean():.0f}%), {result.seconds:.1f} s",
              flush=True)

    write_csv(out / "attribution.csv", SUMMARY_HEADER,
              [row for r in results for row in summary_rows(r)])
    write_csv(out / "attribution_per_image.csv", PER_IMAGE_HEADER,
              [row for r in results for row in per_image_rows(r)])
    with atomic_path(out / "attribution.md") as tmp:
        tmp.write_text(markdown(results))
    panels_figure(out / "figures" / "attribution_panels.png", results, panel_at, args.panel_label)
    seconds = time.time() - start
    write_run_json(out, args, seconds, name="run_attribution.json", device=str(device),
                   precision=precision, mask_extent=extent,
                   runs=[{"setting": r.info.setting, "split": r.info.split, "input": r.info.kind,
                          "layer": r.layer, "images": len(r.names), "seconds": round(r.seconds, 3)}
                         for r in results],
                   notes=sorted({r.info.note for r in results if r.info.note}))
    write_done(out, args, OUTPUTS, done=DONE, seconds=round(seconds, 3), precision=precision,
               mask_extent=extent,
               runs=[{"setting": r.info.setting, "split": r.info.split,
                      **run_entry(work, r.info.folder, sha256=r.info.done_sha256)}
                     for r in results])
    print(f"attribution: {len(results)} runs in {seconds:.1f} s -> {out / 'attribution.csv'}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
