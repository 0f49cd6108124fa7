"""Write tests/data/tensorrt-{10.3,10.13,11}-names.txt.gz: every identifier-like, NUL-terminated string in
the compiled TensorRT Python bindings of that version (tensorrt_cu12_bindings, the module behind the
`tensorrt` and `tensorrt-stubs` packages, which themselves hold no type information). The fake `tensorrt`
modules the tests use, one shaped like each version, may only expose names that occur in their version's
list (as a whole string or as the tail of one: the linker merges a string into another it ends: "INPUT"
lives inside "CONDITIONAL_INPUT").

    python scripts/tensorrt_names.py            # all three; needs the package index (pip download),
    python scripts/tensorrt_names.py 10.3 11    # not TensorRT's libraries (about 1 MB a wheel)

10.3 is JetPack 6's TensorRT (10.3.0.30 on aarch64; the x86 wheel is assumed to bind the same API),
11 the newest 11.x on PyPI (JetPack is not supported by 11.4 itself; the list shows what 11 removed).
"""

import gzip
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "10.3": "tensorrt-cu12-bindings==10.3.0",
    "10.13": "tensorrt-cu12-bindings==10.13.0.35",
    "11": "tensorrt-cu12-bindings==11.4.0.106",
}
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def write_names(version: str) -> Path:
    wheel_spec, out = WHEELS[version], DATA / f"tensorrt-{version}-names.txt.gz"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, wheel_spec], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            so = z.read("tensorrt_bindings/tensorrt.so") + z.read("tensorrt_bindings/__init__.py")
    names = sorted({s.decode() for s in re.findall(rb"[A-Za-z_][A-Za-z0-9_]{1,80}(?=\0|\n|\W)", so)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:  # mtime=0: same bytes each run
        f.write(f"# {wheel_spec}: identifier-like strings of tensorrt_bindings/tensorrt.so and __init__.py\n".encode())
        f.write(("\n".join(names) + "\n").encode())
    print(f"{len(names)} names -> {out}")
    return out


if __name__ == "__main__":
    for version in sys.argv[1:] or WHEELS:
        if version not in WHEELS:
            sys.exit(f"unknown TensorRT version {version!r}; choose from {', '.join(WHEELS)}")
        write_names(version)
