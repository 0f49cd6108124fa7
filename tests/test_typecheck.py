"""mypy over the TensorRT path (engine record, build, runner, audit) and the GPU paths, as part of the suite.

What it can and cannot see: TensorRT's own types are not available to any checker here. `tensorrt-stubs`
10.13.0.35.1 is a 13-line module that re-exports `tensorrt` and `tensorrt_bindings`; the types live in the
compiled bindings, which do not import without TensorRT's libraries. So `tensorrt` is `Any` to mypy, and
the names our code and our fake use are checked against the 10.13 bindings' strings instead
(test_tensorrt_engine.py). Polygraphy ships no type information either. What mypy checks is our own code
on that path: every function body (--check-untyped-defs), the types of what we build and hand out.
"""

import subprocess
import sys

import pytest
from conftest import REPO

FILES = ["sertrt/core/engine.py", "sertrt/export/tensorrt_engine.py", "sertrt/runtime/trt_runner.py",
         "sertrt/export/tensorrt_audit.py",
         # the GPU paths, which CI cannot run either: the half model, CUDA graphs, layer-wise compile, MFU
         "sertrt/model/half.py", "sertrt/model/cuda_graphs.py", "sertrt/model/compile.py", "sertrt/model/flops.py",
         "sertrt/verify/torch_runner.py", "sertrt/training/throughput.py"]


def test_the_tensorrt_path_type_checks():
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--python-version", "3.10", "--follow-imports=silent",
                        "--ignore-missing-imports", "--check-untyped-defs", "--no-incremental", "--no-error-summary",
                        *FILES], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
