"""The floors (shared/STYLE.md 18): every import, lazy ones included, points down.

    core/      formats and helpers every stage reads; the standard library and numpy only
    model/     torch modules, weights I/O, FLOPs                       -> core
    wings      data/ training/ export/ runtime/ verify/ bench/      -> model, core (and the rules below)
    cli.py     on top

Read from the source with ast, so an import inside a function counts as much as one at the top.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sertrt"

# floor -> what it may never import (sertrt sub-packages by name, third-party packages by top-level name)
FORBIDDEN = {
    "runtime": {"model", "training", "export", "verify", "bench", "data", "cli", "torch", "transformers"},
    "export": {"training", "runtime", "verify", "bench", "data", "cli"},
    "model": {"training", "data", "export", "runtime", "verify", "bench", "cli"},
    "data": {"model", "training", "export", "runtime", "verify", "bench", "cli", "torch"},
    "training": {"export", "runtime", "verify", "bench", "cli"},
    "verify": {"training", "export", "bench", "data", "cli"},
    "bench": {"cli"},
}
# core: the standard library, numpy and core, plus these, each imported lazily where it is needed
CORE_THIRD_PARTY = {
    "numpy",
    "soundfile", "soxr",  # audio.py: reading and resampling audio (the runtime's own dependencies)
    "packaging",  # versions.py, engine.py: version comparison (never string comparison)
    "cryptography",  # bundle.py: ed25519 signatures, only with export --sign / --trust
    "tensorrt", "cuda",  # engine.py: the machine's TensorRT version and GPU, only when an engine is built or run
    "polygraphy",  # engine.py: NVIDIA's TensorRT loaders and runner, for both the export and the runtime
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, parts[:-1] if parts[-1] == "__init__" else parts, parts[-1] == "__init__"


def imports(path: Path, name: tuple[str, ...], is_package: bool) -> set[tuple[str, ...]]:
    """Absolute dotted names (as tuples) of every module `path` imports; `from X import y` yields X.y too
    (y may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {tuple(a.name.split(".")) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name[:-1]
                base = base[: len(base) - node.level + 1]
                module = base + (tuple(node.module.split(".")) if node.module else ())
            else:
                module = tuple(node.module.split("."))
            found.add(module)
            found |= {module + (a.name,) for a in node.names}
    return found


def floor(name: tuple[str, ...]) -> str:
    return name[1] if len(name) > 1 else ""


def allowed(here: str, target: tuple[str, ...]) -> bool:
    if target[0] == "sertrt":
        if here == "core":  # core stands on nothing of ours but itself (and the package's __version__)
            return floor(target) == "core" or target in (("sertrt",), ("sertrt", "__version__"))
        return floor(target) not in FORBIDDEN.get(here, ())
    if here == "core":
        return target[0] in sys.stdlib_module_names or target[0] in CORE_THIRD_PARTY or target[0] == "__future__"
    return target[0] not in FORBIDDEN.get(here, ())


def violations() -> list[str]:
    return sorted({f"{'.'.join(name)} -> {'.'.join(target)}" for path, name, is_package in modules()
                   for target in imports(path, name, is_package) if not allowed(floor(name), target)})


def test_every_import_points_down():
    assert violations() == []


def test_the_floors_exist_as_folders():
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} >= {
        "core", "model", "data", "training", "export", "runtime", "verify", "bench"}
    assert not [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py", "cli.py")]


@pytest.mark.parametrize("source, expected", [
    ("from ..training.evaluate import predict_logits\n", "sertrt.export.exporter -> sertrt.training.evaluate"),
    ("import torch\n", "sertrt.runtime.runners -> torch"),
    ("def f():\n    from ..model.io import load_model\n", "sertrt.runtime.runners -> sertrt.model.io"),
])
def test_the_guard_sees_an_arrow_up(tmp_path, monkeypatch, source, expected):
    """The guard itself: a planted upward import (at the top or lazily, in a function) is reported."""
    import shutil

    copy = tmp_path / "sertrt"
    shutil.copytree(PACKAGE, copy)
    module = expected.split(" -> ")[0].split(".")[1:]
    target = copy.joinpath(*module[:-1], module[-1] + ".py")
    target.write_text(target.read_text() + "\n" + source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert expected in violations()
