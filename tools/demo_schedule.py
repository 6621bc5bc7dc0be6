"""Projected wall time of `make -j N reproduce` on an idle N-core machine, from a run's stamps.

Each stage stamp (`WORK/**/.done-*`: name, wall s, CPU s) gives the stage's CPU seconds; on an idle
machine a one-thread stage takes about that long on one core. The stages are then list-scheduled on
N cores along the pipeline's dependency graph (profiles/pipeline.mk), each free core taking the
first ready stage in a priority order: make's (the report's prerequisites depth first: the training
runs in settings order, then the segmentation figures), or segmentation first (the chain fine-tune
-> evaluate -> predict -> post-process ahead of the training runs, since the masked runs wait for
it).
This measures nothing itself: it tells how much of a run's CPU time a 2-core machine can overlap,
when the stamps come from a run whose wall times were inflated by other jobs.

    python -m tools.demo_schedule /tmp/gpu-demo [--cores 2]      (from the repository root)
"""
from __future__ import annotations

import argparse
import heapq
from pathlib import Path

from cxrstats.foundation.argtypes import Parser

SEG_CHAIN = ["data", "seg split", "seg fine-tune", "seg evaluate", "predict masks",
             "gather masks", "post-process masks"]
PIPELINE = set(SEG_CHAIN) | {"cohort", "cache", "seg figures", "report"}


def is_pipeline_stage(name: str) -> bool:
    """A stage of `make reproduce` (shards of the prediction are "predict masks K/N")."""
    return name in PIPELINE or name.startswith(("train ", "predict masks "))


def read_stamps(work: Path) -> dict[str, float]:
    """{stage name: CPU seconds} from every `.done-*` stamp under `work`."""
    cpu = {}
    for stamp in work.rglob(".done-*"):
        if stamp.suffix in (".cpu", ".start", ".tmp", ".args"):   # Make's files beside a stamp
            continue
        name, _, seconds = stamp.read_text().strip().split("\t")
        cpu[name] = float(seconds)
    return cpu


def dependencies(stages: list[str]) -> dict[str, list[str]]:
    """Each stage's prerequisites among `stages` (the demo profile's graph)."""
    deps = {"data": [], "seg split": ["data"], "seg fine-tune": ["seg split"],
            "seg evaluate": ["seg fine-tune"], "cohort": ["data"], "cache": ["cohort"],
            "predict masks": ["cache", "seg evaluate"],
            "seg figures": ["post-process masks", "seg evaluate"]}
    shards = [s for s in stages if s.startswith("predict masks ")]
    for shard in shards:
        deps[shard] = ["cache", "seg evaluate"]
    deps["gather masks"] = shards
    deps["post-process masks"] = ["gather masks" if shards else "predict masks"]
    runs = [s for s in stages if s.startswith("train ")]
    for run in runs:
        deps[run] = ["cache"] + ([] if "_original/" in run else ["post-process masks"])
    deps["report"] = runs + ["seg figures", "cohort"]
    return {s: [d for d in deps[s] if d in stages] for s in stages}


def make_order(stages: list[str], deps: dict[str, list[str]], seg_first: bool) -> list[str]:
    """Depth-first post-order from the report, prerequisites in make's order (optionally the
    segmentation chain before the training runs)."""
    order: list[str] = []

    def visit(stage: str) -> None:
        if stage in order:
            return
        for d in deps[stage]:
            visit(d)
        order.append(stage)
    roots = deps["report"]
    if seg_first:
        roots = [s for s in stages if s in SEG_CHAIN or s.startswith("predict masks ")] + roots
    for s in roots + ["report"]:
        visit(s)
    return order


def schedule(cpu: dict[str, float], cores: int, seg_first: bool) -> float:
    """Makespan in seconds of greedy list scheduling of the stages on `cores` cores."""
    stages = list(cpu)
    deps = dependencies(stages)
    priority = make_order(stages, deps, seg_first)
    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    waiting = list(priority)
    now, free = 0.0, cores
    while waiting or running:
        ready = [s for s in waiting if all(done_at.get(d, 1e18) <= now for d in deps[s])]
        while free and ready:
            stage = ready.pop(0)
            waiting.remove(stage)
            heapq.heappush(running, (now + cpu[stage], stage))
            free -= 1
        finish, stage = heapq.heappop(running)
        now, done_at[stage] = finish, finish
        free += 1
    return now


def main(argv=None) -> int:
    parser = Parser(prog="python -m tools.demo_schedule", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="a finished run's WORK folder")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    stamps = read_stamps(args.work)
    cpu = {k: v for k, v in stamps.items() if is_pipeline_stage(k)}
    extra = sorted(set(stamps) - set(cpu))
    if extra:
        print(f"left out (opt-in analyses, not part of make reproduce): {', '.join(extra)}")
    if "report" not in cpu:
        raise SystemExit(f"error: {args.work}: no finished run (no results/.done-report)")
    total = sum(cpu.values())
    print(f"{args.work}: {len(cpu)} stages, {total:.0f} CPU s in all "
          f"(lower bound on {args.cores} cores: {total / args.cores:.0f} s)")
    for seg_first in (False, True):
        span = schedule(cpu, args.cores, seg_first)
        how = "segmentation first" if seg_first else "make's order"
        print(f"  make -j {args.cores}, one thread per stage, {how}: {span:.0f} s "
              f"({span / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
