"""Checkpoints: one safetensors file whose metadata is the JSON that describes it.

    RUN/best.safetensors   tensors "model.*" (+ "optim.*", "rng.*" in last.safetensors for --resume)
                           metadata {"sertrt": JSON: format, dims, labels, strategy, metrics, versions}
    RUN/best.json          the same JSON, for people and tools that do not read safetensors

One file means one atomic rename: a kill mid-save leaves the previous checkpoint intact. Nothing is
ever unpickled: optimizer state is flattened into tensors plus JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import torch

from . import __version__, atomic
from .errors import SertrtError
from .model import ModelDims, SERModel

FORMAT = "sertrt-checkpoint"
FORMAT_VERSION = 1


def code_version() -> dict[str, str]:
    """sertrt version plus the git commit of the source tree, when there is one."""
    info = {"sertrt": __version__, "torch": torch.__version__}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if commit:
        info["commit"] = commit
    return info


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() -> (tensors named optim.<param>.<key>, JSON-able rest)."""
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in rest["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: SERModel,
    meta: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
    sidecar: bool = True,
) -> None:
    from safetensors.torch import save_file

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code": code_version(),
        "dims": model.dims.to_dict(),
        **meta,
    }
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update(extra_tensors or {})
    text = json.dumps(header, indent=1)
    with atomic.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"sertrt": text})
    if sidecar:
        atomic.write_text(Path(path).with_suffix(".json"), text + "\n")


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, all tensors); SertrtError if it is not a sertrt checkpoint this version reads."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise SertrtError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SertrtError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if "sertrt" not in metadata:
        raise SertrtError(f"{path}: safetensors file without sertrt metadata (not a sertrt checkpoint)")
    header = json.loads(metadata["sertrt"])
    if header.get("format") != FORMAT:
        raise SertrtError(f"{path}: format {header.get('format')!r} is not {FORMAT!r}")
    if header.get("format_version") != FORMAT_VERSION:
        raise SertrtError(
            f"{path}: checkpoint format version {header.get('format_version')} (written by sertrt "
            f"{header.get('code', {}).get('sertrt', '?')}); this sertrt {__version__} reads version {FORMAT_VERSION}"
        )
    return header, tensors


def load_model(path: str | Path) -> tuple[SERModel, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone (no hub, no config file) and load its weights."""
    header, tensors = read_checkpoint(path)
    model = SERModel(ModelDims.from_dict(header["dims"]))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SertrtError(f"{path}: weights do not match the stored dims ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, header
