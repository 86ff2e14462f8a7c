"""What snnconv needs from its environment (issue 24): torch and numpy in ranges for the core, extras for the rest.

An unsupported torch fails at ``import snnconv`` naming both versions; a missing optional package fails the feature
that needs it with one line naming the extra; the core never imports an extra. Missing packages are simulated
(``sys.modules[name] = None``, or an import blocker in a subprocess), so these run in any environment.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import snnconv
from snnconv import _deps
from snnconv._deps import TORCH_MAX_MAJOR, TORCH_MIN, MissingExtraError, check_torch, require
from snnconv.errors import SnnconvError

ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ("torchvision", "tqdm", "matplotlib", "sklearn", "nir", "h5py")
REQUIRED = f"torch>={TORCH_MIN[0]}.{TORCH_MIN[1]},<{TORCH_MAX_MAJOR}"

# Run in a fresh interpreter: make the listed top-level packages unimportable, as if they were not installed.
BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Block())
"""


def _python(code: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    here = str(Path(snnconv.__file__).resolve().parents[1])  # the snnconv this test imported: source or installed
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    env["SNNCONV_NATIVE"] = "0"  # no compiler run in the subprocesses
    prelude = BLOCKER.format(blocked=set(blocked)) if blocked else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env, timeout=300, check=False
    )


# --- torch version --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.12.1", "2.3.0+cu121", "1.13.1", "2.12.0a0+git1234"])
def test_older_torch_is_refused_naming_both_versions(version):
    with pytest.raises(ImportError) as info:
        check_torch(version)
    msg = str(info.value)
    assert version in msg and REQUIRED in msg and "\n" not in msg


@pytest.mark.parametrize("version", ["2.13.0", "2.13.0+cpu", "2.14.1", "2.20.0.dev20270101"])
def test_supported_torch_passes_silently(version, recwarn):
    check_torch(version)
    assert not [w for w in recwarn if "torch" in str(w.message)]


def test_newer_major_warns_untested():
    with pytest.warns(RuntimeWarning, match=r"torch 3\.0\.0 is untested"):
        check_torch("3.0.0")


def test_running_torch_is_supported():
    check_torch(str(torch.__version__))  # the environment this suite runs in


def test_import_snnconv_fails_on_an_old_torch():
    res = _python("import torch\ntorch.__version__ = '2.12.1'\nimport snnconv\n")
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "torch 2.12.1 is installed" in last and REQUIRED in last, res.stderr


# --- declared ranges ------------------------------------------------------------------------------------------------


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    path = ROOT / "pyproject.toml"
    if not path.exists():
        pytest.skip("no pyproject.toml beside the tests")
    return tomllib.loads(path.read_text())["project"]


def test_pyproject_core_is_torch_and_numpy_in_ranges():
    project = _pyproject()
    assert project["dependencies"] == [REQUIRED, "numpy>=1.24,<3"]
    extras = project["optional-dependencies"]
    assert {"data", "digits", "plots", "train", "nir", "all", "test"} <= set(extras)
    for module, (dist, extra) in _deps.EXTRAS.items():  # every package require() names is in the extra it names
        assert any(r.startswith(dist) for r in extras[extra]), (module, dist, extra)


def test_installed_metadata_declares_the_ranges():
    """The wheel's metadata (checked where snnconv is a regular install, as in CI's oldest-torch environment)."""
    try:
        dist = importlib.metadata.distribution("snnconv")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("snnconv is not installed (source tree on the path)")
    installed = dist.read_text("RECORD") is not None  # a wheel's install, not a source tree's egg-info
    if not installed or Path(dist.locate_file("snnconv/__init__.py")).resolve() != Path(snnconv.__file__).resolve():
        pytest.skip("the imported snnconv is not an installed wheel's files (editable install or source tree)")
    core = sorted(r.replace(" ", "") for r in dist.requires or [] if "extra==" not in r.replace(" ", ""))
    assert core == sorted(["numpy<3,>=1.24", f"torch<{TORCH_MAX_MAJOR},>={TORCH_MIN[0]}.{TORCH_MIN[1]}"])
    files = {str(f) for f in dist.files or []}
    assert {"snnconv/native/if_cpu.cpp", "snnconv/native/qcfs_cpu.cpp", "snnconv/native/layout.h"} <= files


# --- missing extras -------------------------------------------------------------------------------------------------


def _without(monkeypatch, *modules: str) -> None:
    """Make ``modules`` (and any cached snnconv module that imported them) look uninstalled for this test."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    for name in [n for n in sys.modules if n in ("snnconv.analysis.plots", "snnconv.data", "snnconv.report_page")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    ("module", "feature", "extra"),
    [
        ("snnconv.analysis.plots", "matplotlib", "plots"),
        ("snnconv.data", "torchvision", "data"),
    ],
)
def test_importing_a_feature_without_its_extra_names_the_extra(monkeypatch, module, feature, extra):
    _without(monkeypatch, feature, f"{feature}.pyplot")
    with pytest.raises(MissingExtraError) as info:
        importlib.import_module(module)
    msg = str(info.value)
    assert f'pip install "snnconv[{extra}]"' in msg and feature in msg and "\n" not in msg
    assert isinstance(info.value, ImportError) and isinstance(info.value, SnnconvError)


def test_nir_export_without_nir_names_the_extra(monkeypatch):
    from snnconv import nir_io

    _without(monkeypatch, "nir")
    with pytest.raises(MissingExtraError, match=r'NIR export/import needs nir, .*pip install "snnconv\[nir\]"'):
        nir_io.import_nir("model.nir")


def test_digits_need_scikit_learn_named_by_its_distribution(monkeypatch):
    _without(monkeypatch, "sklearn")
    with pytest.raises(MissingExtraError, match=r'digits dataset needs scikit-learn, .*"snnconv\[digits\]"'):
        require("sklearn", "the digits dataset")


def test_a_broken_install_is_not_blamed_on_the_extra(tmp_path, monkeypatch):
    """A package that is installed but misses a module of its own raises the real error, not 'install the extra'."""
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import a_module_that_brokenpkg_lost\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("brokenpkg", "x")
    assert not isinstance(info.value, MissingExtraError) and info.value.name == "a_module_that_brokenpkg_lost"


def test_an_unknown_missing_package_names_itself():
    with pytest.raises(MissingExtraError, match=r"^x needs not_a_package_xyz, which is not installed: pip install "):
        require("not_a_package_xyz", "x")


def test_progress_bars_are_skipped_without_tqdm(monkeypatch):
    _without(monkeypatch, "tqdm", "tqdm.auto")
    bar = _deps.tqdm(range(3), desc="x", disable=False, leave=False)
    assert list(bar) == [0, 1, 2] and len(bar) == 3 and bar.disable
    bar.set_postfix(acc="1.0")
    bar.close()


def test_core_works_and_imports_no_extra():
    """In a fresh interpreter where every extra is missing: import the core, convert, simulate, analyse."""
    code = """
import importlib, sys
import torch
import snnconv
for m in ("analysis", "convert", "simulate", "models", "inspect", "evaluate", "checkpoint", "nir_io", "qat",
          "native", "coding", "fold_plan", "prepare", "cli"):
    importlib.import_module("snnconv." + m)
ann = snnconv.models.create("resnet20", num_classes=10, act=snnconv.make_act("qcfs", levels=4), width=0.25)
snn = snnconv.convert(ann.eval(), method="if")
res = snnconv.simulate(snn, torch.randn(2, 3, 32, 32), T=2)
from snnconv.analysis import spike_stats
print(tuple(res.logits.shape), sorted(n for n in sys.modules if n.partition(".")[0] in EXTRAS))
""".replace("EXTRAS", repr(set(EXTRA_MODULES)))
    res = _python(code, blocked=EXTRA_MODULES)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(2, 2, 10) []"


def test_command_line_without_its_extra_is_one_line():
    code = "import sys\nfrom snnconv.cli import main\nsys.exit(main(['list']))\n"
    res = _python(code, blocked=("torchvision",))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "snnconv: error: the snnconv command line needs torchvision, which is not installed: "
        'pip install "snnconv[train]"'
    )
