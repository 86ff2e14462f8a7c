"""docs/api.md is executable: every ``>>>`` example runs as a doctest and must print what the page shows."""

import doctest
from pathlib import Path

import torch

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_page_examples(one_thread):
    default_dtype = torch.get_default_dtype()
    result = doctest.testfile(
        str(API),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
        report=True,
    )
    assert torch.get_default_dtype() == default_dtype
    assert result.attempted > 30, f"only {result.attempted} examples found in {API}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {API} failed (see the output above)"
