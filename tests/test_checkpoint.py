import json

import pytest
import torch
from safetensors.torch import save_file

from sertrt.core.checkpoint import FORMAT_VERSION
from sertrt.core.errors import SertrtError
from sertrt.core.labels import LABELS
from sertrt.model.io import load_model, read_checkpoint, save_checkpoint
from sertrt.model.ser import build_model


@pytest.mark.parametrize("upstream", ["tiny", "fbank", "mfcc"])  # fbank/mfcc: buffers computed, not stored
def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path, upstream):
    torch.manual_seed(0)
    model = build_model(upstream, head="cnn-sa-dnn").eval()
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model, {"strategy": "semi", "metrics": {"ua": 0.5}})
    loaded, header = load_model(path)
    assert header.dims.labels == tuple(LABELS)
    assert header.strategy == "semi" and header.metrics["ua"] == 0.5
    assert header.dims.head.kind == "cnn-sa-dnn"
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert json.loads((tmp_path / "best.json").read_text())["dims"] == header.dims.to_dict()
    w, n = torch.randn(2, 9000), torch.tensor([9000, 5000])
    with torch.no_grad():
        torch.testing.assert_close(loaded(w, n), model(w, n), rtol=0, atol=0)


def test_round_trip_keeps_the_cut_upstream(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", upstream_layers=1).eval()
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model, {})
    loaded, header = load_model(path)  # no option: the dims say how many layers were kept
    assert header.dims.upstream.config["num_hidden_layers"] == 1
    assert header.dims.upstream.source_layers == 2
    assert len(loaded.upstream.model.encoder.layers) == 1 and loaded.dims.upstream.source_layers == 2
    w, n = torch.randn(2, 9000), torch.tensor([9000, 5000])
    with torch.no_grad():
        torch.testing.assert_close(loaded(w, n), model(w, n), rtol=0, atol=0)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = build_model("fbank")
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model, {"epoch": 1})
    before = path.read_bytes()

    def killed(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("safetensors.torch.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before
    assert read_checkpoint(path)[0].epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.safetensors"]


def test_rejects_foreign_and_future_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(SertrtError, match="not a readable safetensors checkpoint"):
        load_model(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(SertrtError, match="without sertrt metadata"):
        load_model(plain)
    future = tmp_path / "future.safetensors"
    meta = {"format": "sertrt-checkpoint", "format_version": FORMAT_VERSION + 1, "code": {"sertrt": "9.0"}}
    save_file({"w": torch.zeros(2)}, str(future), metadata={"sertrt": json.dumps(meta)})
    with pytest.raises(SertrtError, match=rf"format version {FORMAT_VERSION + 1} \(written by sertrt 9.0\)"):
        load_model(future)
    with pytest.raises(SertrtError, match="no such checkpoint"):
        load_model(tmp_path / "missing.safetensors")


def flip_byte_in_tensor(path, name: str) -> None:
    """Flip the top bits of one float32 in the middle of tensor `name`'s bytes (what a bad disk does)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        layout = json.loads(f.read(size))
    start, end = layout[name]["data_offsets"]
    offset = 8 + size + start + ((end - start) // 8) * 4 + 3  # the high byte of one float32
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x7F
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_by_every_reader(tmp_path):
    """One flipped byte once turned a head weight into 2.8e37 and evaluate, export and --resume went on."""
    torch.manual_seed(0)
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, build_model("tiny"), {"epoch": 0, "metrics": {}})
    header, tensors = read_checkpoint(path)
    assert header.format_version == FORMAT_VERSION == 2
    flip_byte_in_tensor(path, "model.head.out.weight")
    with pytest.raises(SertrtError, match="does not match its sha256"):
        read_checkpoint(path)
    with pytest.raises(SertrtError, match="does not match its sha256"):
        load_model(path)


def test_a_version_1_checkpoint_is_refused_in_one_line(tmp_path):
    """Version 1 (no digest) was never released: its weights cannot be checked, so it is not read."""
    model = build_model("tiny")
    path = tmp_path / "old.safetensors"
    header = {"format": "sertrt-checkpoint", "format_version": 1, "code": {"sertrt": "0.1.0"}, "dims": model.dims.to_dict()}
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"sertrt": json.dumps(header)})
    with pytest.raises(SertrtError, match=rf"{path.name}: checkpoint format version 1 .* reads versions 2$"):
        load_model(path)
