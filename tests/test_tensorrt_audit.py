"""The TensorRT audit (sertrt/export/tensorrt_audit.py): every exported graph of tiny is clean, xlsr-53's
too (slow), and each rule fires on a graph planted with what it looks for."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sertrt.export.tensorrt_audit import audit_onnx, format_audit, load_table

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def graph_file(tmp_path, nodes, inputs, outputs, initializers=(), opset=17, name="planted"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def rules(report):
    return {f["rule"] for f in report["findings"]}


def test_the_table_names_its_sources_and_covers_every_version():
    table = load_table()
    assert set(table["versions"]) == {"10.3", "10.16", "11"}
    for version, info in table["versions"].items():
        assert info["table"] in table["tables"] and info["table"] in table["sources"] and info["why"]
    assert not table["tables"]["10.1"]["MatMulInteger"]["supported"]
    assert "INT64" not in table["tables"]["10.15"]["Clip"]["types"]


@pytest.mark.parametrize("make, rule, text", [
    (lambda: ([helper.make_node("CumSum", ["x", "axis"], ["y"])], [vi("x", F, ["batch", "num_samples"])],
              [vi("y", F, ["batch", "num_samples"])], [numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")]),
     "refused", "CumSum"),
    (lambda: ([helper.make_node("Clip", ["x", "lo"], ["y"])], [vi("x", I64, ["batch"])], [vi("y", I64, ["batch"])],
              [numpy_helper.from_array(np.array(400, dtype=np.int64), "lo")]),
     "op-support", "Clip on INT64"),
    (lambda: ([helper.make_node("NonZero", ["x"], ["y"])], [vi("x", F, ["batch", "num_samples"])], [vi("y", I64, [2, None])], []),
     "refused", "data-dependent"),
    (lambda: ([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], [vi("a", TensorProto.UINT8, ["batch", 4])],
              [vi("y", TensorProto.INT32, ["batch", 3])], [numpy_helper.from_array(np.ones((4, 3), np.uint8), "b")]),
     "op-support", "MatMulInteger is not supported"),
    (lambda: ([helper.make_node("Softmax", ["x"], ["s"], axis=-1), helper.make_node("IsNaN", ["s"], ["n"]),
               helper.make_node("Where", ["n", "zero", "s"], ["y"])], [vi("x", F, ["batch", 8])], [vi("y", F, ["batch", 8])],
              [numpy_helper.from_array(np.zeros((), np.float32), "zero")]),
     "fusion", "IsNaN"),
    (lambda: ([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
               helper.make_node("Softmax", ["d"], ["y"])], [vi("x", F, ["batch", 8])], [vi("y", F, ["batch", 8])],
              [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(3, np.int8), "z")]),
     "qdq", "zero-point"),
    (lambda: ([helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], axis=0), helper.make_node("MatMul", ["x", "wd"], ["y"])],
              [vi("x", F, ["batch", 4])], [vi("y", F, ["batch", 3])],
              [numpy_helper.from_array(np.ones((4, 3), np.int8), "w"), numpy_helper.from_array(np.full(4, 0.1, np.float32), "s"),
               numpy_helper.from_array(np.zeros(4, np.int8), "z")]),
     "qdq", "not its output channels"),
])
def test_each_rule_fires_on_a_planted_graph(tmp_path, make, rule, text):
    nodes, inputs, outputs, inits = make()
    report = audit_onnx(graph_file(tmp_path, nodes, inputs, outputs, inits))
    assert not report["clean"] and rule in rules(report), format_audit(report)
    assert any(text in f["line"] for f in report["findings"] if f["rule"] == rule), format_audit(report)


def test_an_opset_beyond_tensorrt_10_3_is_flagged_for_that_version_only(tmp_path):
    path = graph_file(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["batch", 8])], [vi("y", F, ["batch", 8])],
                      opset=21)
    findings = [f for f in audit_onnx(path)["findings"] if f["rule"] == "opset"]
    assert [tuple(f["versions"]) for f in findings] == [("10.3",)]


def test_a_dimension_outside_batch_and_num_samples_is_flagged(tmp_path):
    path = graph_file(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["batch", "frames"])], [vi("y", F, ["batch", "frames"])])
    report = audit_onnx(path)
    assert "shapes" in rules(report), format_audit(report)


@pytest.fixture(scope="module")
def tiny_bundles(tmp_path_factory):
    from conftest import make_tone_corpus

    from sertrt.export.exporter import ExportOptions, export_bundles
    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model
    from sertrt.verify.compare import manifest_scorer

    root = tmp_path_factory.mktemp("audit")
    torch.manual_seed(0)
    save_checkpoint(root / "run" / "best.safetensors", build_model("tiny").eval(), {"epoch": 0, "metrics": {}})
    manifest = make_tone_corpus(root / "tones", per_label=4, seed=5)
    lines = []
    cards = export_bundles(ExportOptions(root / "run", root, "fp32,fp16,int8", calib_manifest=manifest,
                                         calib_utterances=16, test_manifest=manifest), log=lines.append,
                           score=manifest_scorer(root / "run"))
    return {precision: (card, lines, root / precision) for precision, card in cards.items()}


def test_shapes_are_inferred_without_the_weights_as_with_them(tiny_bundles):
    """The audit's symbolic shape inference reads the graph without its weight matrices (split_weights): every
    tensor gets the shape it gets with them."""
    from sertrt.export.tensorrt_audit import _infer_shapes, split_weights

    card, _, bundle = tiny_bundles["fp32"]
    model = onnx.load(str(bundle / card.model))
    light, weights = split_weights(model)
    assert len(weights) > 10 and not {t.name for t in light.graph.initializer} & set(weights)
    (whole, error), (without, light_error) = _infer_shapes(model), _infer_shapes(light)
    assert error is light_error is None
    assert {v.name: v.type for v in without.graph.value_info} == {v.name: v.type for v in whole.graph.value_info}


def test_save_joined_writes_back_the_model_split_weights_took_apart(tiny_bundles, tmp_path):
    """The weights written as records after the graph are read back into that graph by onnx (and by every protobuf
    parser): the same inputs, nodes and initializers as the model that was split."""
    from sertrt.export.tensorrt_audit import save_joined, split_weights

    card, _, bundle = tiny_bundles["fp32"]
    model = onnx.load(str(bundle / card.model))
    save_joined(*split_weights(model), tmp_path / "joined.onnx")
    joined = onnx.load(str(tmp_path / "joined.onnx"))
    onnx.checker.check_model(joined)
    assert [i.name for i in joined.graph.input] == [i.name for i in model.graph.input]
    assert list(joined.graph.node) == list(model.graph.node)
    assert sorted(t.SerializeToString() for t in joined.graph.initializer) == \
        sorted(t.SerializeToString() for t in model.graph.initializer)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_tiny_bundle_is_clean_and_says_so(tiny_bundles, precision):
    card, log, bundle = tiny_bundles[precision]
    assert card.tensorrt_audit["clean"], format_audit(card.tensorrt_audit)
    assert card.tensorrt_audit["precision"] == precision
    assert any(line.startswith(f"TensorRT audit ({precision})") and "clean on TensorRT 10.3" in line for line in log)
    ops = card.tensorrt_audit["ops"]
    assert not {"If", "Loop", "CumSum", "ScatterND", "IsNaN", "NonZero"} & set(ops)
    assert ops.get("Constant", 0) == 0 and card.graph["nodes_after"] < card.graph["nodes_before"]  # folded
    assert audit_onnx(bundle / card.model, precision)["findings"] == []  # the file, read again


@pytest.mark.slow
def test_xlsr53_graphs_are_clean(tmp_path):
    """xlsr-53's architecture (its conv encoder, 1024-wide layers, 16 heads, positional conv) with random
    weights, cut to 2 of its 24 transformer layers: every layer is the same graph, so the ops and patterns
    are those of the full model, at a size a 2-core CI exports in a minute. SERTRT_XLSR_LAYERS=24 runs the
    full depth (about 4 minutes here)."""
    import os

    from sertrt.export import precision as prec
    from sertrt.export.onnx_export import export_onnx, simplify_onnx
    from sertrt.export.spec import ExportSpec
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    model = build_model("xlsr-53", upstream_layers=int(os.environ.get("SERTRT_XLSR_LAYERS", "2"))).eval()
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", ExportSpec(labels=model.dims.labels))
    simplify_onnx(fp32)
    prec.to_fp16(fp32, tmp_path / "fp16.onnx")
    rng = np.random.default_rng(0)
    feeds = [{"waveform": (0.1 * rng.standard_normal((1, 32000))).astype(np.float32), "lengths": np.array([32000])}
             for _ in range(2)]
    prec.to_int8(fp32, tmp_path / "int8.onnx", feeds)
    for name in ("fp32", "fp16", "int8"):
        report = audit_onnx(tmp_path / f"{name}.onnx", name)
        assert report["clean"], format_audit(report)


def test_build_engine_dry_run_prints_device_commands_whose_onnxrt_half_runs_here(tiny_bundles):
    """The printed lines are for a device with TensorRT (never run here); their ONNX Runtime side is: the
    Polygraphy compare line without --trt runs on this machine, so its syntax and inputs are right."""
    import shlex
    import subprocess
    import sys

    from conftest import sertrt_env

    _, _, bundle = tiny_bundles["fp16"]
    r = subprocess.run([sys.executable, "-m", "sertrt", "build-engine", str(bundle), "--dry-run"], capture_output=True,
                       text=True, env=sertrt_env(), timeout=120, check=True)
    lines = [x for x in r.stdout.splitlines() if x and not x.startswith("#")]
    assert "audit at export: clean" in r.stdout and "Not run here" in r.stdout
    assert any(x.startswith("polygraphy convert model.onnx") and "--strongly-typed" in x for x in lines)
    assert any(x.startswith("trtexec --onnx=model.onnx") for x in lines)
    assert not any("--fp16" in x or "--int8" in x for x in lines)  # precision is in the graph
    assert not (bundle / "model.plan").exists()  # nothing built
    compare = shlex.split(next(x for x in lines if x.startswith("polygraphy run")))
    compare[0] = str(__import__("pathlib").Path(sys.executable).with_name("polygraphy"))
    compare.remove("--trt")
    compare.remove("--strongly-typed")
    run = subprocess.run(compare, cwd=bundle, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "onnxrt-runner" in run.stdout + run.stderr


def test_a_graph_shape_inference_cannot_follow_is_reported_and_nothing_is_left_in_the_working_folder(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape inference saves its partial model into the working folder when it fails."""
    work, models = tmp_path / "work", tmp_path / "models"
    work.mkdir()
    models.mkdir()
    monkeypatch.chdir(work)
    node = helper.make_node("Mystery", ["x"], ["y"], domain="vendor.custom")
    graph = helper.make_graph([node], "g", [vi("x", F, ["batch", "num_samples"])], [vi("y", F, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vendor.custom", 1)])
    model.ir_version = 8
    onnx.save(model, str(models / "m.onnx"))
    report = audit_onnx(models / "m.onnx")
    assert {"op-support", "shapes"} <= rules(report), format_audit(report)
    assert list(work.iterdir()) == [] and [p.name for p in models.iterdir()] == ["m.onnx"]
