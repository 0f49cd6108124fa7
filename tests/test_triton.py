"""`sertrt triton`: a bundle as a Triton model repository entry, checked against Triton's own config schema."""


import pytest
import torch
from conftest import make_tone_corpus

from sertrt.core.bundle import ENGINE_FILE, add_file, load_bundle
from sertrt.core.errors import SertrtError
from sertrt.export.exporter import ExportOptions, export_bundle
from sertrt.export.triton import TritonOptions, write_triton_repository
from sertrt.model.io import save_checkpoint
from sertrt.model.ser import build_model
from sertrt.verify.compare import manifest_scorer

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    torch.manual_seed(0)
    save_checkpoint(root / "run" / "best.safetensors", build_model("tiny").eval(), {"strategy": "full", "epoch": 0, "metrics": {}})
    manifest = make_tone_corpus(root / "tones", per_label=4)
    for precision in ("fp32", "int8-dynamic"):
        export_bundle(ExportOptions(root / "run", root / f"bundle-{precision}", precision, test_manifest=manifest),
                      log=lambda s: None, score=manifest_scorer(root / "run"))
    return root


def parse(path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())  # unknown fields are errors


def test_onnx_entry_parses_with_tritons_schema_and_says_what_the_card_says(bundles, tmp_path):
    card = load_bundle(bundles / "bundle-fp32")
    target = write_triton_repository(TritonOptions(bundles / "bundle-fp32", tmp_path / "repo", name="ser", instances=2))
    assert target == tmp_path / "repo" / "ser"
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["1", "1/model.onnx", "config.pbtxt", "labels.txt"]
    assert (target / "1" / "model.onnx").read_bytes() == (bundles / "bundle-fp32" / card.model).read_bytes()
    assert (target / "labels.txt").read_text().split() == list(card.labels)
    config = parse(target / "config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("ser", "onnxruntime_onnx", card.profile["max_batch"])
    inputs = {t.name: t for t in config.input}
    assert list(inputs) == ["waveform", "lengths"]
    assert list(inputs["waveform"].dims) == [-1] and inputs["waveform"].data_type == model_config_pb2.TYPE_FP32
    assert list(inputs["lengths"].dims) == [1] and list(inputs["lengths"].reshape.shape) == []
    assert inputs["lengths"].data_type == model_config_pb2.TYPE_INT64
    (logits,) = config.output
    assert logits.name == "logits" and list(logits.dims) == [4] and logits.label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["sample_rate"].string_value == "16000"
    assert float(config.parameters["window_seconds"].string_value) == card.window_seconds


def test_a_tensorrt_plan_is_served_on_a_gpu_instance(bundles, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles / "bundle-fp32", bundle)
    (bundle / ENGINE_FILE).write_bytes(b"not a real plan: nothing here deserialises it")
    (bundle / f"{ENGINE_FILE}.json").write_text("{}")
    add_file(bundle, bundle / ENGINE_FILE, bundle / f"{ENGINE_FILE}.json")
    target = write_triton_repository(TritonOptions(bundle, tmp_path / "repo"))
    config = parse(target / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and (target / "1" / "model.plan").is_file()
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    onnx_entry = write_triton_repository(TritonOptions(bundle, tmp_path / "repo", name="onnx", engine=False))
    assert parse(onnx_entry / "config.pbtxt").platform == "onnxruntime_onnx"
    with pytest.raises(SertrtError, match="GPU instance only"):
        write_triton_repository(TritonOptions(bundle, tmp_path / "repo", name="x", kind="cpu"))


def test_refusals_leave_the_repository_as_it_was(bundles, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repository(TritonOptions(bundles / "bundle-fp32", repo))
    before = sorted(p.as_posix() for p in repo.rglob("*"))
    for opts, message in [
        (TritonOptions(bundles / "bundle-fp32", repo), "already exists; Triton entries are never replaced"),
        (TritonOptions(bundles / "bundle-int8-dynamic", repo, name="d", kind="gpu"), "ONNX Runtime CPU's artifact"),
        (TritonOptions(bundles / "bundle-fp32", repo, name="../up"), "plain folder name"),
        (TritonOptions(bundles / "bundle-fp32", repo, name="k", kind="tpu"), "unknown instance kind"),
    ]:
        with pytest.raises(SertrtError, match=message):
            write_triton_repository(opts)
    assert sorted(p.as_posix() for p in repo.rglob("*")) == before  # no temp folder left behind either


def test_cli(bundles, tmp_path, cli):
    result = cli("triton", bundles / "bundle-int8-dynamic", tmp_path / "repo", "--name", "ser-cpu")
    assert result.returncode == 0, result.stderr
    assert parse(tmp_path / "repo" / "ser-cpu" / "config.pbtxt").parameters["precision"].string_value == "int8-dynamic"


def test_a_full_disk_names_the_destination(bundles, tmp_path, monkeypatch):
    import errno
    import shutil
    from pathlib import Path

    def sendfile_full(src, dst, **kwargs):  # what shutil's sendfile copy raises: the source's name
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(shutil, "copy2", sendfile_full)
    with pytest.raises(OSError) as e:
        write_triton_repository(TritonOptions(bundles / "bundle-fp32", tmp_path / "repo"))
    assert e.value.filename == str(tmp_path / "repo" / "sertrt" / "1" / "model.onnx")
    monkeypatch.undo()

    def write_full(self, *args, **kwargs):  # a write of bytes names no file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_full)
    with pytest.raises(OSError) as e:
        write_triton_repository(TritonOptions(bundles / "bundle-fp32", tmp_path / "repo"))
    assert e.value.filename == str(tmp_path / "repo" / "sertrt" / "config.pbtxt")
    assert list((tmp_path / "repo").iterdir()) == []


def test_export_into_an_existing_entry_is_refused_before_exporting(bundles, tmp_path, cli):
    (tmp_path / "repo" / "sertrt").mkdir(parents=True)
    result = cli("export", bundles / "run", "--out", tmp_path / "b", "--triton", tmp_path / "repo")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'repo' / 'sertrt'}: already exists; Triton "
                                                  "entries are never replaced (remove it, or choose --name)"]
    assert not (tmp_path / "b").exists()
