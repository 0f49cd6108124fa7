"""Every backend satisfies the one runner contract (sertrt/core/runner.py): streams, parity and the
bench take any of them without branching."""

import numpy as np
import pytest

from sertrt.core.runner import Runner


def test_every_backend_is_a_runner(tmp_path):
    from sertrt.runtime.runners import OrtRunner
    from sertrt.runtime.trt_runner import TrtRunner
    from sertrt.verify.torch_runner import TorchRunner

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not opened before __enter__")
    for runner in (OrtRunner(tmp_path / "model.onnx"), TrtRunner(plan), TorchRunner(tmp_path / "run")):
        assert isinstance(runner, Runner), type(runner).__name__


def test_something_without_infer_is_not_a_runner():
    class NotARunner:
        input_names, output_names = ["waveform"], ["logits"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    assert not isinstance(NotARunner(), Runner)


def test_a_stream_runs_any_runner():
    """EmotionStream only calls `infer`: a stand-in runner written against the protocol is enough."""
    from sertrt.runtime.stream import EmotionStream, StreamConfig

    class Constant:
        input_names, output_names = ["waveform", "lengths"], ["logits"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def infer(self, feeds):
            assert feeds["waveform"].dtype == np.float32 and feeds["lengths"].dtype == np.int64
            return {"logits": np.array([[0.0, 3.0, 0.0, 0.0]] * len(feeds["lengths"]), dtype=np.float32)}

    runner = Constant()
    assert isinstance(runner, Runner)
    with runner:
        stream = EmotionStream(runner, ["neutral", "happy", "angry", "sad"], StreamConfig(silence_dbfs=None))
        results = list(stream.push(np.full(40000, 0.1, dtype=np.float32)))
    assert results and all(r.label == "happy" for r in results)


@pytest.mark.parametrize("bad, match", [
    ({"backend": "torch"}, "valid: ort, trt"),
    ({"provider": "rocm"}, "valid: cpu, cuda, tensorrt"),
    ({"threads": 0}, "must be >= 1"),
    ({"optimization": "O3"}, "valid: basic, extended, all"),
])
def test_runner_options_refuse_bad_values_before_any_bundle_is_read(tmp_path, bad, match):
    from sertrt.core.errors import SertrtError
    from sertrt.runtime.runners import RunnerOptions, open_runner

    with pytest.raises(SertrtError, match=match):
        open_runner(tmp_path / "no-such-bundle", RunnerOptions(**bad))
