"""`make compare` on two finished work folders given by hand (A=..., B=...): they are inputs, never
targets. Run with another profile than the one that made them, it changes no file in either folder
and writes only into B/compare/; run again, it does nothing."""
import hashlib

import pytest

from makeutil import HAVE_MAKE, SETUP, run_make

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_MAKE, reason="GNU make not installed"),
    pytest.mark.skipif(not SETUP.exists(), reason="run `make setup` first (tests never install)"),
]

# The tiny profile's 40 generated images (19 patients) are too few for a 70/15/15 split by patient.
N_IMAGES = "DEMO_N_CLS=60"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two finished tiny work folders: image-level splits (A) and patient-level splits (B)."""
    root = tmp_path_factory.mktemp("finished")
    for split_by in ("image", "patient"):
        run_make("reproduce", "PROFILE=tiny", f"WORK={root / split_by}", f"SPLIT_BY={split_by}",
                 N_IMAGES)
    return root / "image", root / "patient"


def _digests(*folders):
    return {path: hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in folder.rglob("*") if path.is_file()}


def test_compare_reads_folders_given_by_hand_and_writes_only_into_b_compare(finished):
    a, b = finished
    before = _digests(a, b)
    result = run_make("compare", "PROFILE=demo", f"A={a}", f"B={b}", timeout=300)
    after = _digests(a, b)
    assert [path for path, digest in before.items() if after.get(path) != digest] == []
    added = set(after) - set(before)
    assert added and all(b / "compare" in path.parents for path in added), sorted(added)
    assert (b / "compare" / "compare.csv").is_file()
    assert result.stdout.count(">> ") == 1 and ">> compare" in result.stdout

    again = run_make("compare", "PROFILE=demo", f"A={a}", f"B={b}")
    assert ">> " not in again.stdout and _digests(a, b) == after
