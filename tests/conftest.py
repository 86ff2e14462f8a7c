"""Suite-wide guard: a test must not leak torch's global settings into the tests that run after it."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
