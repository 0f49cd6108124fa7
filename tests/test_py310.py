"""JetPack 6 ships Python 3.10: sertrt must not need 3.11+ syntax or standard library. Checked with vermin (minimum
version detection) over the whole package, and by compiling it with a real 3.10 interpreter where one is found."""

import shutil
import subprocess
import sys

import pytest
from conftest import REPO

TARGET = "3.10"


def vermin(*paths):
    pytest.importorskip("vermin")
    main = "import sys; from vermin.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", main, "--no-tips", "--violations", f"-t={TARGET}-", "--eval-annotations",
                           *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_the_package_needs_nothing_newer_than_python_310():
    result = vermin(REPO / "sertrt")
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_catches_311_only_code(tmp_path):
    """The check can fail: tomllib and except* are 3.11."""
    (tmp_path / "new.py").write_text("import tomllib\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    result = vermin(tmp_path / "new.py")
    assert result.returncode != 0 and "3.11" in result.stdout


def python310():
    """A Python 3.10 that runs: on PATH, or a pyenv install (its shim fails when 3.10 is not the active version)."""
    import glob
    import os

    candidates = [shutil.which("python3.10"), *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))]
    for exe in filter(None, candidates):
        try:
            if subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"], capture_output=True,
                              timeout=30).returncode == 0:
                return exe
        except OSError:
            continue
    pytest.skip("no runnable Python 3.10 on this machine")


def test_python_310_compiles_every_module(tmp_path):
    code = "import compileall, sys; sys.exit(0 if compileall.compile_dir(sys.argv[1], quiet=1, workers=1) else 1)"
    result = subprocess.run([python310(), "-c", code, str(REPO / "sertrt")], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPYCACHEPREFIX": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
