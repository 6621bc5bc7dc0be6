"""One-shot GPU check: the CUDA tests, the speed figures that size the paper grid, and a projection.

On one CUDA GPU (a few minutes) it
1. runs the CUDA-marked tests (`pytest -m cuda tests/test_cuda.py`: the CUDA branches, and the
   training, attribution and segmentation command lines end to end on the GPU);
2. measures prediction images/s of LiteMedSAM and MedSAM ViT-B (random weights; speed does not
   depend on them) through cxrseg.predict's path (`cxrseg.engine.encode` + `segment`, the prior's
   box) at predict's default batch;
3. times one ViT-B fine-tuning step at batch 4 (image encoder + mask decoder) with
   `cxrseg.finetune.train_epoch`;
4. measures ResNet50 and DenseNet121 training images/s at 512 px (`cxrcls.training.train_step`)
   for batch 4 and 32, in float32 and with bf16 autocast + channels_last, and their prediction
   images/s at the evaluation batch of 16;
5. measures the classifier loader's images/s at 512 px (memmap slice, m15 mask, resize,
   augmentation, copy to the GPU);
6. trains K copies of each backbone side by side (separate processes, batch 4, bf16 +
   channels_last) to see how many runs one GPU carries at once;
7. projects the wall time of the paper profile's whole grid on this GPU: fine-tuning ViT-B on the
   292 RSUA pairs, evaluating it, segmenting 10,486 cohort images, and 30 classifier runs
   (2 backbones x 3 inputs x 5 splits) for 30 epochs (the maximum) and 15 (a typical early stop),
   one run at a time and K at a time, against the goal: the whole grid in at most 2 hours on one
   H100-class GPU.

`--cpu-smoke` runs every step on the CPU with tiny models and sizes (the micro SAM instead of
LiteMedSAM / ViT-B, 32 px classifiers, one or two steps) in well under a minute, so CI keeps this
script working; its figures say nothing about any GPU. `--out FILE.json` writes the figures.

    python -m tools.gpu_check --out gpu_check.json      # on a CUDA machine (repository root)
    python -m tools.gpu_check --cpu-smoke               # anywhere
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_cxrcls import bench_eval, bench_loader, bench_train, make_cache, sync
from benchmarks.bench_cxrseg import predict_throughput
from cxrcls.cohort import part_sizes
from cxrseg.finetune import SegData, _set_trainable, train_epoch
from cxrseg.study_masks import PIPELINE_SIZE
from cxrstats.foundation.argtypes import Parser
from cxrstats.foundation.fileio import write_json
from vendor_medsam import build_sam, load_medsam, weights
from cxrstats.foundation.device import prepare_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 2 * 3600          # the whole paper grid on one H100-class GPU
ARCHS = ("resnet50", "densenet121")
# The paper grid: 10,486 cohort images (segmented, then 70/15/15 per split), 292 RSUA pairs.
COHORT_IMAGES = 10_486
SEG_PAIRS = 292
RUNS_PER_ARCH = 3 * 5            # inputs x splits
EPOCHS = (30, 15)                # the study's maximum, and a typical early stop

# What each mode measures. `models` maps the figure's name to the SAM config actually run.
SIZES = {
    "cuda": dict(models={"lite": "lite", "vit_b": "vit_b"}, predict_size=PIPELINE_SIZE,
                 predict_images=64, predict_rounds=2,
                 finetune_batch=4, finetune_steps=8, train_size=512, train_batches=(4, 32),
                 train_steps=20, train_budget=6.0, warmup=3, eval_batch=16, loader_images=200,
                 loader_seconds=5.0, concurrent=(2, 4, 8), concurrent_seconds=10.0),
    "cpu-smoke": dict(models={"lite": "micro", "vit_b": "micro"}, predict_size=64,
                      predict_images=4, predict_rounds=1, finetune_batch=2, finetune_steps=1,
                      train_size=32,
                      train_batches=(2, 4), train_steps=1, train_budget=0.0, warmup=1,
                      eval_batch=4, loader_images=16, loader_seconds=0.5, concurrent=(2,),
                      concurrent_seconds=0.5),
}


def log(line: str) -> None:
    print(line, flush=True)


# ----------------------------------------------------------------------------- 1. tests

def run_cuda_tests() -> dict:
    """pytest -m cuda tests/test_cuda.py in a child process -> counts of passed/failed/skipped."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
               "tests/test_cuda.py"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
    result = {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "error")}
    result["returncode"] = done.returncode
    if done.returncode not in (0, 5):  # 5: nothing collected
        print(done.stdout[-4000:] + done.stderr[-2000:], file=sys.stderr)
    return result


# ----------------------------------------------------------------------------- 2-3. segmentation

def sam_model(config: str):
    """LiteMedSAM with its real weights when installed (speed does not depend on them), else a
    seeded random model of `config`."""
    if config == "lite" and weights.find_lite_weights() is not None:
        return load_medsam("lite")
    torch.manual_seed(0)
    return build_sam(config).eval()


def predict_rates(device: str, sizes: dict) -> dict:
    """{'lite': {...}, 'vit_b': {...}}: images/s of cxrseg.predict's path on images of the cohort
    cache's size (512 px; 64 in the smoke run) at predict's default batch."""
    out = {}
    for name, config in sizes["models"].items():
        model = sam_model(config)
        rate = predict_throughput(model, sizes["predict_images"], sizes["predict_rounds"],
                                  device=device, size=sizes["predict_size"], quiet=True,
                                  precision=resolve_precision("auto", torch.device(device)))
        out[name] = {"config": config, "images_per_s": rate}
        del model
        free_cuda()
    return out


def lung_pairs(n: int, size: int = 256, seed: int = 0) -> tuple[list, list]:
    """n random (size, size) uint8 images and 0/1 two-ellipse masks, like RSUA pairs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    mask = ((((x - 0.3) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)
            | (((x - 0.7) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1)).astype(np.uint8)
    images = [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(n)]
    return images, [mask.copy() for _ in range(n)]


def finetune_step_seconds(device: str, config: str, batch: int, steps: int) -> float:
    """Seconds per step of cxrseg.finetune's `--train all` epoch (image encoder + mask decoder,
    Dice + BCE, Adam) at `batch`, after one warm-up step."""
    dev = torch.device(device)
    model = sam_model(config).to(dev)
    params = _set_trainable(model, "all")
    optimizer = torch.optim.Adam(params, lr=1e-4)
    args = Namespace(train="all", batch_size=batch, box_shift=20 * model.img_size / 1024,
                     prior_box_fraction=0.0, loss="dicebce")
    generator = torch.Generator().manual_seed(0)
    warm = SegData(model, [f"w{i}" for i in range(batch)], *lung_pairs(batch), None, "box")
    data = SegData(model, [f"s{i}" for i in range(batch * steps)],
                   *lung_pairs(batch * steps, seed=1), None, "box")
    train_epoch(model, warm, optimizer, dev, args, generator)
    sync(dev)
    start = time.perf_counter()
    train_epoch(model, data, optimizer, dev, args, generator)
    sync(dev)
    seconds = (time.perf_counter() - start) / steps
    del model, optimizer
    free_cuda()
    return seconds


# ----------------------------------------------------------------------------- 4-6. classifiers

def free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_rates(device: str, sizes: dict) -> list[dict]:
    """Training images/s per backbone, batch and mode (fp32, or bf16 autocast + channels_last)."""
    rows = []
    for arch in ARCHS:
        for batch in sizes["train_batches"]:
            for fast in (False, True):
                rate = bench_train(arch, sizes["train_size"], max_steps=sizes["train_steps"],
                                   budget=sizes["train_budget"], batch=batch, device=device,
                                   precision="bf16" if fast else "fp32", channels_last=fast,
                                   warmup=sizes["warmup"], quiet=True)
                rows.append({"arch": arch, "size": sizes["train_size"], "batch": batch,
                             "bf16_channels_last": fast, "images_per_s": rate})
                free_cuda()
    return rows


def eval_rates(device: str, sizes: dict) -> dict:
    """Prediction images/s per backbone at the eval batch (bf16 + channels_last: CUDA's default)."""
    out = {}
    for arch in ARCHS:
        out[arch] = bench_eval(arch, sizes["train_size"], batch=sizes["eval_batch"],
                               max_steps=sizes["train_steps"], budget=sizes["train_budget"],
                               device=device, precision="bf16", channels_last=True,
                               warmup=sizes["warmup"])
        free_cuda()
    return out


def loader_rate(device: str, sizes: dict) -> float:
    """The classifier loader's images/s at the training size, delivered on `device`."""
    with tempfile.TemporaryDirectory() as tmp:
        make_cache(Path(tmp), size=sizes["train_size"], n=sizes["loader_images"])
        return bench_loader(Path(tmp), sizes["train_size"], seconds=sizes["loader_seconds"],
                            device=device)


def concurrent_rates(device: str, sizes: dict, batch: int) -> list[dict]:
    """K training processes of one backbone side by side on `device` (batch `batch`, bf16 +
    channels_last); total images/s over the same timed window, and each process's peak memory."""
    rows = []
    for arch in ARCHS:
        for count in sizes["concurrent"]:
            with tempfile.TemporaryDirectory() as barrier:
                command = [sys.executable, "-m", "tools.gpu_check", "--worker", arch,
                           "--device", device, "--size", str(sizes["train_size"]),
                           "--batch", str(batch),
                           "--seconds", str(sizes["concurrent_seconds"]), "--barrier", barrier,
                           "--count", str(count), "--warmup", str(sizes["warmup"])]
                threads = 1 if device == "cpu" else max(1, (os.cpu_count() or 1) // count)
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env,
                                          cwd=ROOT) for _ in range(count)]
                results = []
                for proc in procs:
                    out, _ = proc.communicate()
                    if proc.returncode != 0:
                        raise RuntimeError(f"worker {arch} x{count} failed "
                                           f"(exit {proc.returncode})")
                    results.append(json.loads(out.strip().splitlines()[-1]))
            rows.append({"arch": arch, "runs": count, "batch": batch,
                         "images_per_s": sum(r["images_per_s"] for r in results),
                         "peak_memory_gb_per_run": max(r["peak_memory_gb"] for r in results)})
    return rows


def worker(args) -> None:
    """One of K side-by-side training processes: warm up, wait for all K, train for --seconds,
    print {"images_per_s", "peak_memory_gb"} as JSON."""
    device = prepare_device(args.device)
    barrier = Path(args.barrier)

    def ready():
        (barrier / f"ready.{os.getpid()}").touch()
        while len(list(barrier.glob("ready.*"))) < args.count:
            time.sleep(0.01)

    fast = device.type == "cuda"
    if fast:
        torch.backends.cudnn.benchmark = True
    rate = bench_train(args.worker, args.size, max_steps=10**9, budget=args.seconds,
                       batch=args.batch, device=str(device), precision="bf16" if fast else "fp32",
                       channels_last=fast,
                       warmup=args.warmup, quiet=True, ready=ready)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if fast else 0.0
    print(json.dumps({"images_per_s": rate, "peak_memory_gb": peak}))


# ----------------------------------------------------------------------------- 7. projection

def grid_seconds(figures: dict, epochs: int, seg_epochs: int, concurrent: bool) -> dict:
    """Projected seconds of the paper grid's stages from the measured rates.

    Classifiers: per run, `epochs` x (train images / training rate at batch 4 with bf16 +
    channels_last + validation images / prediction rate) + the final validation and test passes;
    15 runs per backbone. With `concurrent`, each backbone's runs share the GPU at the number of
    side-by-side runs that gave the most images/s (prediction assumed to speed up alike).
    Segmentation (ViT-B): fine-tuning = `seg_epochs` x (train steps at batch 4 + validation
    losses) + the epoch-0 pass over the training and validation pairs; evaluation = all pairs
    for the fine-tuned and the zero-shot model; prediction = every cohort image once (no refine
    pass, the paper profile).
    Stages run one after another (an upper bound: `original` runs could overlap segmentation).
    """
    n_train, n_val, n_test = part_sizes(COHORT_IMAGES)
    s_train, s_val, _ = part_sizes(SEG_PAIRS)
    fast = {r["arch"]: r["images_per_s"] for r in figures["train"]
            if r["bf16_channels_last"] and r["batch"] == figures["paper_batch"]}
    train = {}
    for arch in ARCHS:
        speedup = 1.0
        if concurrent:
            together = [r["images_per_s"] for r in figures["concurrent"] if r["arch"] == arch]
            speedup = max([1.0] + [t / fast[arch] for t in together])
        evaluate = figures["eval"][arch]
        per_run = (epochs * (n_train / fast[arch] + n_val / evaluate) + (n_val + n_test) / evaluate)
        train[arch] = RUNS_PER_ARCH * per_run / speedup
    vit = figures["predict"]["vit_b"]["images_per_s"]
    step = figures["finetune"]["seconds_per_step"]
    steps_per_epoch = math.ceil(s_train / figures["finetune"]["batch"])
    finetune = seg_epochs * (steps_per_epoch * step + s_val / vit) + (s_train + s_val) / vit
    seg = {"finetune": finetune, "evaluate": 2 * SEG_PAIRS / vit, "predict": COHORT_IMAGES / vit}
    total = sum(seg.values()) + sum(train.values())
    return {"epochs": epochs, "seg_epochs": seg_epochs, "concurrent": concurrent,
            "segmentation_s": seg, "training_s": train, "total_s": total,
            "meets_goal": total <= GOAL_SECONDS}


# ----------------------------------------------------------------------------- main

def measure(mode: str, device: str, skip_tests: bool) -> dict:
    sizes = SIZES[mode]
    dev = prepare_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as cxrcls.train does on CUDA
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    figures = {"mode": mode, "device": name, "torch": torch.__version__,
               "paper_batch": sizes["train_batches"][0]}
    log(f"gpu_check ({mode}) on {name}, torch {torch.__version__}")
    if not skip_tests:
        figures["tests"] = run_cuda_tests()
        t = figures["tests"]
        log(f"cuda tests: {t['passed']} passed, {t['failed'] + t['error']} failed, "
            f"{t['skipped']} skipped")
    figures["predict"] = predict_rates(str(dev), sizes)
    for key, row in figures["predict"].items():
        log(f"predict {key} ({row['config']}): {row['images_per_s']:.2f} images/s")
    ft = sizes["finetune_batch"]
    figures["finetune"] = {"config": sizes["models"]["vit_b"], "batch": ft,
                           "seconds_per_step": finetune_step_seconds(
                               str(dev), sizes["models"]["vit_b"], ft, sizes["finetune_steps"])}
    log(f"finetune vit_b ({figures['finetune']['config']}, encoder + decoder) batch {ft}: "
        f"{figures['finetune']['seconds_per_step']:.3f} s/step")
    figures["train"] = train_rates(str(dev), sizes)
    for r in figures["train"]:
        mode_name = "bf16+channels_last" if r["bf16_channels_last"] else "fp32"
        log(f"train {r['arch']} {r['size']}px batch {r['batch']} {mode_name}: "
            f"{r['images_per_s']:.1f} images/s")
    figures["eval"] = eval_rates(str(dev), sizes)
    for arch, rate in figures["eval"].items():
        log(f"predict {arch} {sizes['train_size']}px batch {sizes['eval_batch']}: "
            f"{rate:.1f} images/s")
    figures["loader_images_per_s"] = loader_rate(str(dev), sizes)
    log(f"loader {sizes['train_size']}px: {figures['loader_images_per_s']:.0f} images/s")
    figures["concurrent"] = concurrent_rates(str(dev), sizes, figures["paper_batch"])
    for r in figures["concurrent"]:
        log(f"concurrent {r['arch']} x{r['runs']} batch {r['batch']}: {r['images_per_s']:.1f} "
            f"images/s in all, peak {r['peak_memory_gb_per_run']:.1f} GB per run")
    figures["projection"] = [grid_seconds(figures, e, e, c) for e in EPOCHS for c in (False, True)]
    note = "  (cpu-smoke: tiny sizes, not a projection)" if mode == "cpu-smoke" else ""
    for p in figures["projection"]:
        how = "runs side by side" if p["concurrent"] else "one run at a time"
        log(f"projected paper grid, {p['epochs']} epochs, {how}: {p['total_s'] / 3600:.2f} h "
            f"(segmentation {sum(p['segmentation_s'].values()) / 3600:.2f} h, classifiers "
            f"{sum(p['training_s'].values()) / 3600:.2f} h); goal <= 2 h on one H100-class GPU: "
            f"{'met' if p['meets_goal'] else 'not met'}{note}")
    return figures


def main(argv=None) -> int:
    parser = Parser(prog="python -m tools.gpu_check", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny CPU version of every step (CI); its figures mean nothing")
    parser.add_argument("--device", default="cuda", help="CUDA device to check (default cuda)")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--skip-tests", action="store_true", help="do not run tests/test_cuda.py")
    worker_args = parser.add_argument_group("internal: one side-by-side training process")
    worker_args.add_argument("--worker", default=None, choices=ARCHS, help=argparse.SUPPRESS)
    for flag, kind in (("--size", int), ("--batch", int), ("--seconds", float),
                       ("--barrier", str), ("--count", int), ("--warmup", int)):
        worker_args.add_argument(flag, type=kind, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    mode = "cpu-smoke" if args.cpu_smoke else "cuda"
    device = "cpu" if args.cpu_smoke else args.device
    if args.cpu_smoke:
        torch.set_num_threads(1)  # tiny models: on a shared CPU, more threads only wait
    if mode == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run with --cpu-smoke for the CPU version")
    figures = measure(mode, device, args.skip_tests)
    if args.out:
        write_json(args.out, figures)
        log(f"figures -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
