"""Suite-wide guard: a test (or a module-scoped fixture) must not leak torch's global settings into later tests.

Also marks the core test files (``-m core``) and, under ``SNNCONV_TEST_INSTALLED=1``, refuses to test a snnconv
that is not an installed (non-editable) package.
"""

import os
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

#: Test files of the core: conversion, simulation, bit-serial exactness, models, the native kernels, the analysis
#: numbers, and the install checks. They need torch, numpy, pytest and hypothesis only; CI also runs them
#: (``pytest -m core``) on the oldest supported torch from an installed wheel (``scripts/test-oldest``).
CORE = (
    "analysis/test_energy.py", "analysis/test_error.py", "analysis/test_spikes.py", "analysis/test_thresholds.py",
    "convert/test_bitserial.py", "convert/test_calif.py", "convert/test_convert.py",
    "convert/test_transformer_convert.py", "functional/", "layers/", "models/", "native/", "test_allocator.py",
    "test_checkpoint.py", "test_coding.py", "test_errors.py", "test_fold_plan.py", "test_inspect.py", "test_install.py",
    "test_qat.py", "test_simulate.py",
)  # fmt: skip


#: Tests in those files that need an extra (the digits dataset, a training run): not core.
NOT_CORE = (
    "convert/test_calif.py::test_digits_qat_export_matches_predictions",
    "functional/test_sparsity.py::test_regularizer_lowers_spiking_activity_on_digits",
    "test_inspect.py::test_inspect_run",
)


def pytest_configure(config):
    missing = [c for c in CORE + NOT_CORE if not (TESTS / c.partition("::")[0]).exists()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py CORE names test files that do not exist: {missing}")
    if os.environ.get("SNNCONV_TEST_INSTALLED") == "1":
        import snnconv

        where = Path(snnconv.__file__).resolve()
        if TESTS.parent in where.parents or "site-packages" not in where.parts:
            raise pytest.UsageError(f"SNNCONV_TEST_INSTALLED=1 but snnconv is imported from {where}, not installed")


def pytest_report_header(config):
    import numpy

    import snnconv

    where = Path(snnconv.__file__).parent
    return f"snnconv {snnconv.__version__} from {where}; torch {torch.__version__}, numpy {numpy.__version__}"


def _is_core_file(rel: str) -> bool:
    return any(rel == c or (c.endswith("/") and rel.startswith(c)) for c in CORE)


def pytest_ignore_collect(collection_path, config):
    """Under ``-m core`` the other test files are not even imported: they may need extras the environment lacks."""
    if config.getoption("markexpr", "") != "core" or not collection_path.name.startswith("test_"):
        return None
    if collection_path.suffix != ".py" or TESTS not in collection_path.resolve().parents:
        return None
    return None if _is_core_file(collection_path.resolve().relative_to(TESTS).as_posix()) else True


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(item.path).resolve().relative_to(TESTS).as_posix()
        if f"{rel}::{item.name.partition('[')[0]}" in NOT_CORE:
            continue
        if _is_core_file(rel):
            item.add_marker(pytest.mark.core)


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
