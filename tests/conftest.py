"""Shared test fixtures."""
from contextlib import contextmanager

import pytest

# The shared test helpers assert too; rewrite their asserts so failures show the values.
pytest.register_assert_rewrite("cliargs", "synthetic_pairs")


@contextmanager
def torch_threads(n: int):
    """Run a block with `n` torch threads, restoring the previous count."""
    import torch  # here, not at module level: collecting the torch-free tests stays light

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: the test models are tiny, and on a busy 2-core machine two
    OpenMP threads per process are many times slower than one. Restores the previous count."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny finished segmentation study (tests/synthetic_pairs.make_study), one per test file;
    tests that change it work on copies. Built with one torch thread, as the tests run."""
    from synthetic_pairs import make_study
    with torch_threads(1):
        return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def predicted(study, tmp_path_factory):
    """The study's images segmented in two shards and whole, then post-processed
    (tests/synthetic_pairs.make_predicted), one per test file."""
    from synthetic_pairs import make_predicted
    with torch_threads(1):
        return make_predicted(study, tmp_path_factory.mktemp("predicted"))
