"""The floors guard (scripts/check_layout.py, run by scripts/lint.sh) can fail: a planted upward import, at the top
or lazily in a function, a loose module or a missing floor is reported."""

import graphlib
import importlib.util
import shutil

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("check_layout", REPO / "scripts" / "check_layout.py")
check_layout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layout)


@pytest.fixture
def copy(tmp_path):
    return shutil.copytree(check_layout.PACKAGE, tmp_path / "sertrt",
                           ignore=shutil.ignore_patterns("__pycache__", "*.onnx"))


@pytest.mark.parametrize("source, expected", [
    ("from ..training.evaluate import predict_logits\n", "sertrt.export.exporter -> sertrt.training.evaluate"),
    ("import torch\n", "sertrt.runtime.runners -> torch"),
    ("def f():\n    from ..model.io import load_model\n", "sertrt.runtime.runners -> sertrt.model.io"),
])
def test_the_guard_sees_an_arrow_up(copy, source, expected):
    module = expected.split(" -> ")[0].split(".")[1:]
    target = copy.joinpath(*module[:-1], module[-1] + ".py")
    target.write_text(target.read_text() + "\n" + source)
    assert expected in check_layout.violations(copy)


def test_the_guard_sees_a_module_off_its_floor(copy):
    (copy / "helpers.py").write_text("")
    shutil.rmtree(copy / "verify")
    assert check_layout.violations(copy) == ["helpers.py: a module beside cli.py (it belongs on a floor)",
                                             "sertrt/verify/__init__.py: missing floor"]


def core_import_order(package):
    """core's modules, each after those it imports (lazily too); graphlib.CycleError names a circle."""
    graph = {name: {t[:2] for t in check_layout.imports(path, name, False) if t[:1] == ("core",) and len(t) > 1}
             for path, name, is_package in check_layout.modules(package / "core") if not is_package}
    return list(graphlib.TopologicalSorter(graph).static_order())


def test_core_imports_one_way(copy):
    assert core_import_order(check_layout.PACKAGE)
    for module, line in (("outputs", "from .bundle import CARD"), ("bundle", "from .outputs import MARKER")):
        path = copy / "core" / f"{module}.py"
        path.write_text(path.read_text() + f"\n{line}\n")
    with pytest.raises(graphlib.CycleError, match="bundle"):
        core_import_order(copy)
