"""The floors (shared/STYLE.md 18): every import, lazy ones included, points down. Run by scripts/lint.sh;
prints each upward arrow and exits 1 when there is one (tests/test_layout.py: it sees one).

    core/      formats and helpers every stage reads; the standard library and numpy only
    model/     torch modules, weights I/O, FLOPs                       -> core
    wings      data/ training/ export/ runtime/ verify/ bench/      -> model, core (and the rules below)
    cli.py     on top

Read from the source with ast, so an import inside a function counts as much as one at the top.
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sertrt"
FLOORS = {"core", "model", "data", "training", "export", "runtime", "verify", "bench"}

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


def modules(package: Path):
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
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


def violations(package: Path = PACKAGE) -> list[str]:
    """Each upward import as "importer -> imported"; a missing floor folder or a loose module beside cli.py too."""
    found = {f"{'.'.join(name)} -> {'.'.join(target)}" for path, name, is_package in modules(package)
             for target in imports(path, name, is_package) if not allowed(floor(name), target)}
    found |= {f"{package.name}/{f}/__init__.py: missing floor" for f in FLOORS
              if not (package / f / "__init__.py").exists()}
    found |= {f"{p.name}: a module beside cli.py (it belongs on a floor)" for p in package.glob("*.py")
              if p.name not in ("__init__.py", "__main__.py", "cli.py")}
    return sorted(found)


if __name__ == "__main__":
    sys.exit("\n".join(violations()) or None)
