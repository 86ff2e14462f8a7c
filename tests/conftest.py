"""Suite-wide guard: a test (or a module-scoped fixture) must not leak torch's global settings into later tests."""

import pytest
import torch

_THREADS, _DTYPE = torch.get_num_threads(), torch.get_default_dtype()  # as the session started


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    torch.set_num_threads(_THREADS)
    torch.set_default_dtype(_DTYPE)
    yield
    torch.set_num_threads(_THREADS)
    torch.set_default_dtype(_DTYPE)


@pytest.fixture
def one_thread():
    """Small tensors on a shared CPU: one intra-op thread is several times faster (restored by the guard above)."""
    torch.set_num_threads(1)
