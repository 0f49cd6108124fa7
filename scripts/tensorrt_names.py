"""Write tests/data/tensorrt-10.13-names.txt.gz: every identifier-like, NUL-terminated string in the
compiled TensorRT 10.13 Python bindings (tensorrt_cu12_bindings 10.13.0.35, the module behind the
`tensorrt-stubs` 10.13 package, which itself holds no type information). The fake `tensorrt` module the
tests use may only expose names that occur there (as a whole string or as the tail of one: the linker
merges a string into another it ends: "INPUT" lives inside "CONDITIONAL_INPUT").

    python scripts/tensorrt_names.py   # needs the package index (pip download), not TensorRT's libraries
"""

import gzip
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "tensorrt-cu12-bindings==10.13.0.35"
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tensorrt-10.13-names.txt.gz"

with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True)
    wheel = next(Path(tmp).glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        so = z.read("tensorrt_bindings/tensorrt.so") + z.read("tensorrt_bindings/__init__.py")
names = sorted({s.decode() for s in re.findall(rb"[A-Za-z_][A-Za-z0-9_]{1,80}(?=\0|\n|\W)", so)})
OUT.parent.mkdir(parents=True, exist_ok=True)
with gzip.open(OUT, "wt", encoding="utf-8") as f:
    f.write(f"# {WHEEL}: identifier-like strings of tensorrt_bindings/tensorrt.so and __init__.py\n")
    f.write("\n".join(names) + "\n")
print(f"{len(names)} names -> {OUT}")
