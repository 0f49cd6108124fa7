"""A bundle as a Triton Inference Server model repository entry (`sertrt triton BUNDLE REPO`, `export --triton`;
docs/runtime.md): REPO/<name>/config.pbtxt, labels.txt (logits order) and 1/model.onnx, or 1/model.plan when the
bundle has a TensorRT engine. The entry is staged beside its place and renamed: it appears complete or not at all,
never replacing one.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import naming
from ..core.bundle import ENGINE_FILE, BundleCard, load_bundle
from ..core.choices import TRITON_KINDS as KINDS
from ..core.errors import SertrtError

DTYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "float16": "TYPE_FP16", "int32": "TYPE_INT32"}


@dataclass
class TritonOptions:
    bundle: Path
    repo: Path
    name: str = "sertrt"
    kind: str = "auto"  # instance kind: auto = GPU for a TensorRT plan, else CPU
    instances: int = 1
    queue_delay_us: int = 100  # how long a request may wait for others to batch with
    engine: bool = True  # use the bundle's TensorRT plan when it has one


def config_pbtxt(opts: TritonOptions, card: BundleCard, platform: str, kind: str) -> str:
    """Triton's model configuration in protobuf text format (the ModelConfig message)."""
    entries = []
    for t in card.spec["inputs"]:  # Triton owns the batch axis; (batch,) in the model is a scalar per request
        dims = "[ -1 ]" if t["axes"][1:] else "[ 1 ] reshape: { shape: [ ] }"
        entries.append(f'  {{ name: "{t["name"]}" data_type: {DTYPES[t["dtype"]]} dims: {dims} }}')
    labels = [f'  {{ name: "{t["name"]}" data_type: {DTYPES[t["dtype"]]} dims: [ {len(card.labels)} ] '
              'label_filename: "labels.txt" }' for t in card.spec["outputs"]]
    max_batch = int(card.profile["max_batch"])
    preferred = sorted({b for b in (max_batch // 2, max_batch) if b >= 2})
    lines = [f'name: "{opts.name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}",
             "input [", ",\n".join(entries), "]", "output [", ",\n".join(labels), "]", "dynamic_batching {"]
    if preferred:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]")
    lines += [f"  max_queue_delay_microseconds: {opts.queue_delay_us}", "}",
              f"instance_group [ {{ count: {opts.instances} kind: KIND_{kind.upper()} }} ]"]
    parameters = {"sample_rate": str(card.sample_rate), "window_seconds": repr(card.window_seconds),
                  "hop_seconds": repr(card.hop_seconds), "precision": card.precision}
    for key, value in parameters.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def check_triton_options(opts: TritonOptions) -> Path:
    """The options and the destination REPO/<name> (returned), checked before anything is read or written:
    `export --triton` calls it before exporting."""
    if opts.kind not in KINDS:
        raise SertrtError(f"unknown instance kind {opts.kind!r} (valid: {', '.join(KINDS)})")
    if opts.instances < 1 or opts.queue_delay_us < 0:
        raise SertrtError("--instances must be >= 1 and --queue-delay-us >= 0")
    if not opts.name or "/" in opts.name or opts.name.startswith("."):
        raise SertrtError(f"model name {opts.name!r}: must be a plain folder name")
    repo = Path(opts.repo)
    target = repo / opts.name
    if target.exists():
        raise SertrtError(f"{target}: already exists; Triton entries are never replaced (remove it, or choose --name)")
    if repo.exists() and not repo.is_dir():
        raise SertrtError(f"{repo}: not a folder")
    return target


def write_triton_repository(opts: TritonOptions) -> Path:
    """Write REPO/<name> from a bundle (its hashes checked first); returns that folder."""
    target = check_triton_options(opts)
    card = load_bundle(opts.bundle)
    bundle, repo = Path(opts.bundle), Path(opts.repo)
    plan = opts.engine and ENGINE_FILE in card.all_files
    if plan:
        platform, model_file, source = "tensorrt_plan", "model.plan", bundle / ENGINE_FILE
    else:
        platform, model_file, source = "onnxruntime_onnx", "model.onnx", bundle / card.model
    kind = opts.kind if opts.kind != "auto" else ("gpu" if plan else "cpu")
    if plan and kind == "cpu":
        raise SertrtError(f"{bundle}: a TensorRT plan runs on a GPU instance only (use --kind gpu or auto)")
    if card.precision == "int8-dynamic" and kind == "gpu":
        raise SertrtError(f"{bundle}: an int8-dynamic bundle is ONNX Runtime CPU's artifact (use --kind cpu or auto)")
    text = config_pbtxt(opts, card, platform, kind)
    repo.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{opts.name}.", dir=repo))
    try:
        (staged / "1").mkdir()
        copies = {f"1/{model_file}": source}
        if not plan:  # weights in external data files (model.onnx.data) sit beside the graph, as in the bundle
            copies.update({f"1/{name.replace(card.model, model_file, 1)}": bundle / name for name in card.all_files
                           if name.startswith(f"{card.model}.") and (bundle / name).is_file()})
        for name, src in copies.items():
            with naming(target / name):  # a full disk names the destination (shutil's sendfile names the source)
                shutil.copy2(src, staged / name)
        for name, content in (("config.pbtxt", text), ("labels.txt", "\n".join(card.labels) + "\n")):
            with naming(target / name):
                (staged / name).write_text(content, encoding="utf-8")
        staged.rename(target)  # fails, leaving the target untouched, if something appeared there meanwhile
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return target
