"""CPU allocator tuning (issue 8): glibc's mallopt where there is glibc, a clear error for bad settings."""

import platform

import pytest

from snnconv.allocator import ENV, tune_cpu_allocator, tune_from_env
from snnconv.errors import SnnconvError

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_glibc_takes_the_settings_and_tensors_still_work():
    import torch

    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator(1 << 20, 64 << 20) is True  # idempotent, any valid pair
    a = torch.ones(3 << 20)  # 12 MB: now served from the heap
    assert float(a.sum()) == 3 << 20


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": -1}, {"trim_threshold": 1.5}, {"mmap_threshold": 1 << 26},
                                    {"mmap_threshold": True}, {"trim_threshold": 1 << 32}])  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(SnnconvError, match="tune_cpu_allocator"):
        tune_cpu_allocator(**kwargs)


def test_environment_switch(monkeypatch):
    monkeypatch.setenv(ENV, "default")
    assert tune_from_env() is False
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(SnnconvError, match=ENV):
        tune_from_env()
    monkeypatch.delenv(ENV)
    assert tune_from_env() is GLIBC
