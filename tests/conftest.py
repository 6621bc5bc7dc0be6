"""Shared test helpers: paths to fixtures and to the optional ../shared reference folder."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: the test models are tiny, and on a busy 2-core machine two
    OpenMP threads per process are many times slower than one. Restores the previous count."""
    import torch  # here, not at module level: collecting the torch-free tests stays light

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
