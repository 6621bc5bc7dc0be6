"""tools/demo_schedule.py: the list schedule of a finished run's stamps follows the
pipeline's graph, including a prediction split into shards and joined by the gather stage."""
from __future__ import annotations

from pathlib import Path

from tools import demo_schedule

CHAIN = {"data": 1, "seg split": 1, "seg fine-tune": 10, "seg evaluate": 2, "cohort": 1,
         "cache": 1, "post-process masks": 1, "train a_original/split0": 12,
         "train a_m15/split0": 10, "seg figures": 1, "report": 1}


def _work(root: Path, stages: dict[str, float]) -> Path:
    for i, (name, cpu) in enumerate(stages.items()):
        folder = root / f"s{i}"
        folder.mkdir(parents=True)
        (folder / ".done-x").write_text(f"{name}\t{cpu}\t{cpu}\n")
    return root


def test_shards_run_side_by_side_and_gather_waits_for_both(tmp_path):
    whole = demo_schedule.read_stamps(_work(tmp_path / "a", {**CHAIN, "predict masks": 10}))
    sharded = demo_schedule.read_stamps(_work(tmp_path / "b", {
        **CHAIN, "predict masks 0/2": 5, "predict masks 1/2": 5, "gather masks": 0.5}))
    deps = demo_schedule.dependencies(list(sharded))
    assert deps["gather masks"] == ["predict masks 0/2", "predict masks 1/2"]
    assert deps["post-process masks"] == ["gather masks"]
    assert deps["predict masks 1/2"] == ["cache", "seg evaluate"]
    # by hand, 2 cores: data-split-finetune-evaluate ends at 14 on one core, cohort-cache-original
    # run at 15 on the other. One predict job: 14 + 10 + 1 (post) + 10 (m15 run) + 1 (report) = 36.
    # Two shards of 5, one per core as each frees: 15 + 5 + 0.5 (gather) + 1 + 10 + 1 = 32.5
    assert demo_schedule.schedule(whole, 2, seg_first=True) == 36
    assert demo_schedule.schedule(sharded, 2, seg_first=True) == 32.5


def test_make_files_beside_the_stamps_are_not_stamps(tmp_path):
    work = _work(tmp_path / "w", {"data": 1.5})
    compare = work / "compare"
    compare.mkdir()
    (compare / ".done-compare.args").write_text("cxrstats.compare --a x --b y --out y/compare\n")
    (work / "s0" / ".done-x.start").write_text("1700000000.5\n")
    assert demo_schedule.read_stamps(work) == {"data": 1.5}
