"""Helpers for the tests that run the Makefile: run make in the repository, and a fake `srun`."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / ".venv" / ".installed"
HAVE_MAKE = shutil.which("make") is not None

# A stand-in for Slurm's srun: it appends its arguments (one line, tab-separated) to $SRUN_LOG,
# skips its own options (every leading argument starting with "-") and runs the rest. When
# $SRUN_FAIL_MATCH is set and occurs in the command line, it fails once (like a step killed by
# the scheduler) without running anything; the marker file $SRUN_LOG.failed remembers that.
FAKE_SRUN = r"""#!/usr/bin/env bash
set -u
(IFS=$'\t'; echo "$*") >> "$SRUN_LOG"
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
if [ -n "${SRUN_FAIL_MATCH:-}" ] && [[ "$*" == *"$SRUN_FAIL_MATCH"* ]] \
   && [ ! -e "$SRUN_LOG.failed" ]; then
  touch "$SRUN_LOG.failed"
  echo "srun: error: step failed (injected by the test)" >&2
  exit 1
fi
exec "$@"
"""


def write_fake_srun(folder: Path) -> Path:
    """Write the fake `srun` into `folder` (to be put first on PATH); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "srun"
    path.write_text(FAKE_SRUN)
    path.chmod(0o755)
    return path


def run_make(*args: str, env: dict | None = None, check: bool = True,
             timeout: float = 600, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run make in the repository with this Python as PY and without re-installing .venv
    (`quiet`: with -C and --no-print-directory; False runs it in the repository with neither, as
    a user types it there)."""
    where = ["--no-print-directory", "-C", str(ROOT)] if quiet else []
    cmd = ["make", *where, f"-o{SETUP.relative_to(ROOT)}", f"PY={sys.executable}", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("MAKEFLAGS", None)
    full_env.pop("MFLAGS", None)
    result = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout,
                            cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def commands(dry_run_output: str) -> list[str]:
    """The stage commands a `make -n` prints (the lines that echo them), in order."""
    return [line[len("echo '"):-1] for line in dry_run_output.splitlines()
            if line.startswith("echo '") and line.endswith("'")]
