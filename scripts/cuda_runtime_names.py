"""Write tests/data/cuda-bindings-runtime-names.txt.gz: the functions, classes, enum members and constants
`cuda.bindings.runtime` defines in cuda-bindings' Cython source (runtime.pyx, shipped in the wheel). The
fake `cuda.bindings.runtime` the TensorRT runner's tests use may only expose names on this list.

    python scripts/cuda_runtime_names.py        # needs the package index (pip download, about 8 MB)
"""

import gzip
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "cuda-bindings==12.9.*"  # the CUDA 12 line: JetPack 6 (CUDA 12.6) and onnxruntime-gpu's CUDA 12 builds
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "cuda-bindings-runtime-names.txt.gz"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            src = z.read("cuda/bindings/runtime.pyx").decode()
    names = set(re.findall(r"^(?:def|class|cdef class) (\w+)", src, re.M))  # functions and types
    names |= set(re.findall(r"^ {0,4}(\w+) = ", src, re.M))  # enum members and module constants
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # mtime=0: same bytes each run
        f.write((f"# {wheel.name}: cuda/bindings/runtime.pyx\n" + "\n".join(sorted(names)) + "\n").encode())
    print(f"wrote {OUT} ({len(names)} names)")


if __name__ == "__main__":
    main()
