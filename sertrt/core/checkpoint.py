"""The checkpoint's header, without torch: RUN/best.safetensors holds tensors "model.*" (+ "optim.*" in
last.safetensors) and metadata {"sertrt": the header JSON, "sertrt_sha256": digest}; RUN/best.json the same
JSON. The tensors are read and written by `sertrt.model.io`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .dims import ModelDims
from .errors import SertrtError

FORMAT = "sertrt-checkpoint"
FORMAT_VERSION = 2
DIGEST_KEY = "sertrt_sha256"


@dataclass
class CheckpointHeader:
    """The header JSON, typed. `train_state` and `optimizer` are only in last.safetensors."""

    dims: ModelDims
    format_version: int = FORMAT_VERSION
    code: dict[str, str] = field(default_factory=dict)  # sertrt/torch versions, git commit
    strategy: str | None = None
    epoch: int | None = None  # 0-based epoch the weights are from (None: not trained, e.g. bench)
    metrics: dict[str, Any] = field(default_factory=dict)  # test metrics of that epoch
    train_state: dict[str, Any] | None = None  # {"epoch", "best_ua", "history"}
    optimizer: dict[str, Any] | None = None  # param_groups and scalars of the flattened optimizer
    extra: dict[str, Any] = field(default_factory=dict)  # any other key, kept as written

    _KEYS = ("code", "strategy", "epoch", "metrics", "train_state", "optimizer")

    def to_dict(self) -> dict[str, Any]:
        optional = {key: getattr(self, key) for key in self._KEYS[1:]}
        return {"format": FORMAT, "format_version": self.format_version, "code": self.code, "dims": self.dims.to_dict(),
                **{k: v for k, v in optional.items() if v is not None}, **self.extra}

    @classmethod
    def from_dict(cls, d: Any, path: str | Path) -> CheckpointHeader:
        """SertrtError (one line naming `path`) unless `d` is a header of a version this sertrt reads."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise SertrtError(f"{path}: format {d.get('format') if isinstance(d, dict) else None!r} is not {FORMAT!r}")
        if d.get("format_version") != FORMAT_VERSION:
            raise SertrtError(f"{path}: checkpoint format version {d.get('format_version')} (written by sertrt "
                              f"{(d.get('code') or {}).get('sertrt', '?')}); this sertrt {__version__} reads "
                              f"versions {FORMAT_VERSION}")
        try:
            dims = ModelDims.from_dict(d["dims"])
        except (KeyError, TypeError, ValueError) as e:
            raise SertrtError(f"{path}: checkpoint header has no readable model dims ({e!r})") from None
        known = {"format", "format_version", "dims", *cls._KEYS}
        return cls(dims=dims, format_version=d["format_version"], code=d.get("code") or {},
                   strategy=d.get("strategy"), epoch=d.get("epoch"), metrics=d.get("metrics") or {},
                   train_state=d.get("train_state"), optimizer=d.get("optimizer"),
                   extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def from_json(cls, text: str, path: str | Path) -> CheckpointHeader:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SertrtError(f"{path}: checkpoint metadata is not valid JSON ({e.msg}): corrupt") from None
        return cls.from_dict(d, path)


def resolve_checkpoint(run: str | Path) -> Path:
    """RUN directory -> RUN/best.safetensors; a checkpoint file is taken as is."""
    run = Path(run)
    if run.is_dir():
        ckpt = run / "best.safetensors"
        if not ckpt.is_file():
            raise SertrtError(f"{run}: no best.safetensors in this run directory (has training finished an epoch?)")
        return ckpt
    return run
