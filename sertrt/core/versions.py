"""The package versions each stage supports (pyproject.toml says the same; a test holds them together), and
`require(stage)`, which refuses a missing or unsupported one in one line instead of a traceback from inside
onnx later. Reads package metadata only: no heavy import.
"""

from __future__ import annotations

from importlib import metadata

from .errors import SertrtError

# The oldest of each that scripts/test-oldest.sh runs the tests with.
SUPPORTED = {
    "onnxruntime": ">=1.20",
    "onnx": ">=1.17",
    "onnxscript": ">=0.7.1",
    "onnxslim": ">=0.1.98",
    "torch": ">=2.11",
    "transformers": ">=5.17",
    "cryptography": ">=42",
}
STAGES = {
    "export": ("onnxruntime", "onnx", "onnxscript", "onnxslim", "torch", "transformers"),
    "train": ("torch", "transformers"),
    "runtime": ("onnxruntime",),
    "sign": ("cryptography",),  # bundle signatures: export --sign, stream/parity --trust
}
# onnxruntime ships under several distribution names (the GPU build, Jetson Zoo's, ...): any one counts.
DISTRIBUTIONS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")}


def installed_version(package: str) -> str | None:
    for name in DISTRIBUTIONS.get(package, (package,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def require(stage: str) -> None:
    """Refuse a missing or unsupported package of `stage` in one line (SertrtError)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    for package in STAGES[stage]:
        supported = SUPPORTED[package]
        found = installed_version(package)
        if found is None:
            if stage == "runtime":  # onnxruntime is checked only when installed: a TensorRT-only runtime needs none
                continue
            extras = {"train": "train", "sign": "sign"}.get(stage, "train,export")
            raise SertrtError(f"sertrt {stage} needs {package}{supported}, which is not installed "
                              f"(pip install 'sertrt[{extras}]')")
        try:
            ok = Version(found) in SpecifierSet(supported, prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            raise SertrtError(f"sertrt {stage}: {package} {found} is installed, but {package}{supported} is supported "
                              f"(pip install '{package}{supported}')")

