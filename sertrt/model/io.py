"""Checkpoint weights: one safetensors file whose metadata is the JSON header (layout: `sertrt.core.checkpoint`).

One file means one atomic rename, and nothing is unpickled (optimizer state is flattened into tensors plus JSON).
`sertrt_sha256`, a digest of the JSON and every tensor, is checked by every reader: a flipped byte is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..core import atomic
from ..core.checkpoint import DIGEST_KEY, FORMAT, FORMAT_VERSION, CheckpointHeader
from ..core.errors import SertrtError
from .ser import SERModel


def tensors_digest(header_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the header JSON text and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(header_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


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


def save_checkpoint(path: str | Path, model: SERModel, meta: dict[str, Any],
                    extra_tensors: dict[str, torch.Tensor] | None = None, sidecar: bool = True) -> None:
    """`meta`: the header's other keys (strategy, epoch, metrics, train_state, optimizer, ...). Written to a temp
    file and renamed, so a failed write (a full disk) keeps the previous checkpoint; it raises an OSError naming `path`."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    header = CheckpointHeader.from_dict({"format": FORMAT, "format_version": FORMAT_VERSION, "code": code_version(),
                                         "dims": model.dims.to_dict(), **meta}, path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update(extra_tensors or {})
    text = json.dumps(header.to_dict(), indent=1)
    with atomic.atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata={"sertrt": text, DIGEST_KEY: tensors_digest(text, tensors)})
        except SafetensorError as e:  # an I/O error comes as text: "... No space left on device (os error 28)"
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from None
    if sidecar:
        atomic.write_text(Path(path).with_suffix(".json"), text + "\n")


def read_checkpoint(path: str | Path) -> tuple[CheckpointHeader, dict[str, torch.Tensor]]:
    """(header, all tensors); SertrtError if it is not a sertrt checkpoint this version reads, or its
    tensors do not match their digest."""
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
    header = CheckpointHeader.from_json(metadata["sertrt"], path)
    if metadata.get(DIGEST_KEY) != tensors_digest(metadata["sertrt"], tensors):
        raise SertrtError(f"{path}: checkpoint does not match its sha256 (corrupt or modified); "
                          "use another checkpoint (last.safetensors / best.safetensors) or retrain")
    return header, tensors


def checkpoint_digest(path: str | Path) -> str | None:
    """The sha256 a checkpoint stores of its header and tensors, from the file's header alone: it names the
    checkpoint in a bundle's card without reading gigabytes (read_checkpoint checks it against the tensors)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(DIGEST_KEY)


def load_model(path: str | Path) -> tuple[SERModel, CheckpointHeader]:
    """Rebuild the model from the checkpoint alone (no hub, no config file) and load its weights."""
    header, tensors = read_checkpoint(path)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    # wav2vec2 stores every tensor: skip the random init of weights about to be replaced (on the meta device);
    # fbank/mfcc compute buffers the checkpoint does not hold
    meta = header.dims.upstream.kind == "wav2vec2"
    with torch.device("meta" if meta else "cpu"):
        model = SERModel(header.dims)
    try:
        model.load_state_dict(state, strict=True, assign=meta)
    except RuntimeError as e:
        raise SertrtError(f"{path}: weights do not match the stored dims ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, header
