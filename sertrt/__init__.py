"""sertrt: speech emotion recognition from corpus to edge device; `sertrt.load(bundle)(audio)` labels audio.

    import sertrt
    rec = sertrt.load("bundle", device="cpu")   # cpu | cuda | tensorrt (sertrt.runtime.api)
    print(rec("speech.wav").label)

Importing sertrt costs nothing beyond Python: `load` and the runtime (numpy, ONNX Runtime) come in on first use.
"""

from typing import Any

from .core.errors import CheckFailed, SertrtError

__version__ = "0.1.0"
__all__ = ["load", "Recognizer", "Prediction", "SertrtError", "CheckFailed", "__version__"]


def __getattr__(name: str) -> Any:  # PEP 562: the runtime is imported when first asked for
    if name in ("load", "Recognizer", "Prediction"):
        from .runtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'sertrt' has no attribute {name!r}")
