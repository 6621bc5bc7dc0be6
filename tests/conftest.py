"""Shared test fixtures."""
import pytest


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: the test models are tiny, and on a busy 2-core machine two
    OpenMP threads per process are many times slower than one. Restores the previous count."""
    import torch  # here, not at module level: collecting the torch-free tests stays light

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
