"""Runtime stage: torch-free inference on exported bundles (numpy at import); `load` is `sertrt.load`."""

from typing import Any

from ..core.versions import require

require("runtime")


def __getattr__(name: str) -> Any:
    if name in ("load", "Recognizer", "Prediction"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sertrt.runtime' has no attribute {name!r}")
