"""End to end: `make reproduce PROFILE=tiny` runs every stage, does nothing the second time, and
re-trains only the run whose folder was deleted."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / ".venv" / ".installed"
STAGE_LINE = re.compile(r"^>> (.+)$", re.MULTILINE)


def _make(work: Path, *goals: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run make in the repository with the tiny profile, this Python, and no re-install."""
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), f"-o{SETUP.relative_to(ROOT)}",
           "PROFILE=tiny", f"WORK={work}", f"PY={sys.executable}", *goals]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _stages(output: str) -> list[str]:
    return STAGE_LINE.findall(output)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")
@pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (the tests never install)")
def test_tiny_reproduce_then_nothing_then_only_the_deleted_run(tmp_path):
    work = tmp_path / "work"
    first = _make(work, "reproduce")
    ran = _stages(first.stdout)
    runs = [s for s in ran if s.startswith("train ")]
    assert len(runs) == 4, ran                       # 1 backbone x 2 inputs x 2 splits
    for stage in ("data", "seg split", "seg fine-tune", "seg evaluate", "cohort", "cache",
                  "predict masks", "post-process masks", "report"):
        assert stage in ran, (stage, ran)
    assert ran.index("report") == len(ran) - 1 and ran.index("seg fine-tune") < ran.index("predict masks")
    assert "stage times" in first.stdout and "total" in first.stdout

    results = work / "results"
    for name in ("table1.csv", "table2.csv", "table2.md", "table3.csv", "ttests.csv", "mantel.csv",
                 "summary.md"):
        assert (results / name).stat().st_size > 0, name
    assert list((results / "figures").glob("*.png"))
    for setting in ("resnet18_original", "resnet18_m50"):
        for k in (0, 1):
            run = work / "runs" / setting / f"split{k}"
            assert (run / "test_probs.npy").is_file() and (run / "timing.json").is_file()
    table2 = (results / "table2.csv").read_text()
    assert "resnet18_original" in table2 and "resnet18_m50" in table2

    # A second run does nothing: the final target is up to date and no stage starts.
    assert _make(work, "-q", str(results / ".done-report"), check=False).returncode == 0
    assert _stages(_make(work, "reproduce").stdout) == []

    # Deleting one run re-trains that run only (and then re-writes the report).
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/split*/.done-train")}
    shutil.rmtree(work / "runs" / "resnet18_m50" / "split1")
    again = _stages(_make(work, "reproduce").stdout)
    assert again == ["train resnet18_m50/split1", "report"], again
    for path, mtime in stamps.items():
        if "resnet18_m50/split1" not in str(path):
            assert path.stat().st_mtime_ns == mtime, path
