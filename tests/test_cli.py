"""The command line as a user meets it: fast help, one-line errors, exit codes, files written."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, sertrt_env
from test_api import bundle  # noqa: F401  (a fixture: a tiny fp32 bundle with a 1 s profile)


def sertrt(*args, **kw):
    return subprocess.run([sys.executable, "-m", "sertrt", *map(str, args)], env=sertrt_env(), capture_output=True,
                          text=True, cwd=kw.get("cwd", REPO), timeout=kw.get("timeout", 300))


def assert_one_line_error(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from sertrt.cli import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0 and 'train' in r.output;"
        "r = CliRunner().invoke(app, ['train', '--help']); assert r.exit_code == 0;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], env=sertrt_env(), check=True)


def test_bad_inputs_give_one_line_errors(tone_corpus, tmp_path, cli):
    assert_one_line_error(
        cli("train", "--train-manifest", tmp_path / "nope.jsonl", "--test-manifest", tone_corpus, "--out", tmp_path / "r"),
        "nope.jsonl: no such manifest",
    )
    bad = tmp_path / "bad.jsonl"
    rows = [json.loads(x) for x in tone_corpus.read_text().splitlines()]
    rows[1]["label"] = "surprised"
    rows[1]["path"] = str(tone_corpus.parent / rows[1]["path"])
    bad.write_text(json.dumps(rows[1]) + "\n")
    assert_one_line_error(
        cli("train", "--train-manifest", bad, "--test-manifest", tone_corpus, "--out", tmp_path / "r"),
        "bad.jsonl:1", "unknown label 'surprised'",
    )
    assert_one_line_error(
        cli("train", "--train-manifest", tone_corpus, "--test-manifest", tone_corpus, "--out", tmp_path / "r",
            "--upstream", tmp_path / "no-such-model"),
        "cannot load a pretrained wav2vec2 model",
    )
    assert_one_line_error(cli("evaluate", tmp_path, "--manifest", tone_corpus), "no best.safetensors")
    assert_one_line_error(cli("data", "split", tone_corpus, "--test-fraction", "2"), "between 0 and 1")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*.safetensors"))


def test_nan_audio_stops_training_naming_the_file(tone_corpus, tmp_path, cli):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "nan.wav"
    x = np.zeros(8000, dtype=np.float32)
    x[5] = np.nan
    sf.write(wav, x, 16000, subtype="FLOAT")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(dict(path=str(wav), label="sad", corpus="c", language="en", speaker="s",
                                        duration=0.5, sample_rate=16000)) + "\n")
    assert_one_line_error(
        cli("train", "--train-manifest", manifest, "--test-manifest", tone_corpus, "--out", tmp_path / "r"),
        "nan.wav", "NaN/Inf",
    )


def test_split_train_evaluate(tone_corpus, tmp_path, cli):
    # the default holds whole speakers out: the tone corpus has two, so one of them
    r = cli("data", "split", tone_corpus, "--out-dir", tmp_path / "by-speaker", "--test-fraction", "0.25")
    assert r.returncode == 0 and "(speaker-independent)" in r.stdout, r.stderr
    assert len((tmp_path / "by-speaker" / "test_manifest.jsonl").read_text().splitlines()) == 12
    r = cli("data", "split", tone_corpus, "--out-dir", tmp_path, "--test-fraction", "0.25", "--group-by", "none")
    assert r.returncode == 0 and "(speaker-dependent)" in r.stdout, r.stderr
    train, test = tmp_path / "train_manifest.jsonl", tmp_path / "test_manifest.jsonl"
    assert len(train.read_text().splitlines()) == 16 and len(test.read_text().splitlines()) == 8
    r = cli("train", "--train-manifest", train, "--test-manifest", test, "--out", tmp_path / "run",
            "--epochs", "1", "--upstream", "mfcc", "--head", "fcn", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("evaluate", tmp_path / "run", "--manifest", test, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["count"] == 8 and 0.0 <= report["ua"] <= 1.0
    saved = json.loads((tmp_path / "run" / "eval" / "test_manifest.metrics.json").read_text())
    assert saved["confusion_matrix"] == report["confusion_matrix"]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert saved["wa"] == pytest.approx(best["test_metrics"]["wa"])  # evaluate reproduces training's own test score
    # the epoch was chosen on a share of the training manifest, never on the test manifest
    assert best["test_metrics"]["count"] == 8 and 0 < best["metrics"]["count"] < 16
    assert best["test_metrics"]["split"] == "speaker-dependent"  # said wherever the test score is
    assert best["valid_split"]["fraction"] == 0.1 and best["valid_split"]["of"] == str(train)
    png = (tmp_path / "run" / "eval" / "test_manifest.confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_train_upstream_layers(tone_corpus, tmp_path, cli):
    from sertrt.model.io import read_checkpoint

    def train(out, *extra):
        return cli("train", "--train-manifest", tone_corpus, "--test-manifest", tone_corpus, "--out", out,
                   "--quiet", *extra)

    run = tmp_path / "run"
    r = train(run, "--epochs", "1", "--upstream", "tiny", "--upstream-layers", "1")
    assert r.returncode == 0, r.stderr
    upstream = json.loads((run / "best.json").read_text())["dims"]["upstream"]
    assert upstream["config"]["num_hidden_layers"] == 1 and upstream["source_layers"] == 2
    r = train(run, "--epochs", "2", "--resume")  # no option: the run keeps its 1 layer
    assert r.returncode == 0, r.stderr
    header, _ = read_checkpoint(run / "last.safetensors")
    assert header.train_state["epoch"] == 1 and header.dims.upstream.config["num_hidden_layers"] == 1
    r = cli("export", run, "--out", tmp_path / "bundle")  # the bundle says what it runs
    assert r.returncode == 0, r.stderr
    source = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["source_checkpoint"]
    assert (source["upstream_layers"], source["upstream_source_layers"]) == (1, 2)
    assert_one_line_error(train(run, "--epochs", "3", "--resume", "--upstream-layers", "2"),
                          "--upstream-layers 2: ", "was trained with 1, and a resumed run keeps it")
    assert_one_line_error(train(tmp_path / "r2", "--upstream-layers", "3"),
                          "--upstream-layers 3: tiny has 2 transformer layers (valid: 0 to 2)")
    assert_one_line_error(train(tmp_path / "r2", "--upstream", "mfcc", "--upstream-layers", "1"),
                          "needs a wav2vec2 upstream, not 'mfcc'")
    assert not (tmp_path / "r2").exists()


def test_experiment_layers_checks_k_before_training(tone_corpus, tmp_path, cli):
    from sertrt.data.protocol import ProtocolOptions, write_protocol

    write_protocol(ProtocolOptions(tone_corpus, tmp_path / "protocol", folds=2))
    base = ("experiment", "layers", "--protocol", tmp_path / "protocol", "--out", tmp_path / "exp", "--tiny")
    assert_one_line_error(cli(*base, "--layers", "2,3"), "--upstream-layers 3: tiny has 2 transformer layers")
    assert_one_line_error(cli(*base, "--layers", "2,x"), "cannot read '2,x' as a comma-separated list")
    assert not (tmp_path / "exp").exists()


def test_export_int8_dynamic_then_stream_with_ort_settings(tone_corpus, tmp_path, cli):
    """The CPU INT8 artifact through the commands a user types, with stream's ONNX Runtime options."""
    import torch

    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "run" / "best.safetensors", build_model("tiny").eval(), {"epoch": 0, "metrics": {}})
    r = cli("export", tmp_path / "run", "--out", tmp_path / "bundle", "--precision", "int8-dynamic", "--test-manifest", tone_corpus)
    assert r.returncode == 0, r.stderr
    assert "(int8-dynamic, validation passed" in r.stdout
    wav = next(tone_corpus.parent.glob("*.wav"))
    r = cli("stream", tmp_path / "bundle", wav, "--threads", "1", "--no-spinning", "--silence-dbfs", "-120")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[-1]["summary"] and rows[-1]["windows"] == len(rows) - 1 >= 1
    assert rows[-1]["label"] in ("neutral", "happy", "angry", "sad")
    assert_one_line_error(cli("export", tmp_path / "run", "--out", tmp_path / "b2", "--precision", "int8-dynamic",
                              "--engine"), "TensorRT takes the `int8` (QDQ) bundle")


def test_version_and_exit_codes_in_help():
    r = sertrt("--version")
    assert r.returncode == 0 and r.stdout.strip() == "sertrt 0.1.0", (r.stdout, r.stderr)
    r = sertrt("--help")
    assert "0 ok, 1 bad input (a file, an option), 2 usage, 3 a check failed" in " ".join(r.stdout.split())
    for option, value, valid in (("--smoothing", "median", "'none', 'ema', 'majority'"), ("--backend", "xyz", "'ort', 'trt', 'torch'")):
        r = sertrt("stream", "b", option, value)  # a choice the help lists, refused as usage: exit 2
        assert r.returncode == 2 and f"'{value}' is not one of {valid}" in r.stderr


CHOICES = [  # (command words, its required arguments, the option (None: an argument), the library's constant)
    (["train"], ["--train-manifest", "m", "--out", "o"], "--head", "HEAD_NAMES"),
    (["train"], ["--train-manifest", "m", "--out", "o"], "--strategy", "STRATEGIES"),
    (["train"], ["--train-manifest", "m", "--out", "o"], "--schedule", "SCHEDULES"),
    (["export"], ["run", "--out", "o"], "--precision", "PRECISIONS"),
    (["export"], ["run", "--out", "o"], "--calibration", "CALIBRATION_METHODS"),
    (["export"], ["run", "--out", "o"], "--cpu-target", "CPU_TARGETS"),
    (["triton"], ["b", "r"], "--kind", "TRITON_KINDS"),
    (["data", "split"], ["m"], "--group-by", "GROUPINGS"),
    (["data", "protocol"], ["m", "--out", "o"], "--protocol", "PROTOCOLS"),
    (["experiment"], ["--protocol", "p", "--out", "o"], None, "TABLES"),
    (["parity"], ["b", "--run", "r", "--manifest", "m"], "--backend", "BACKENDS"),
    (["parity"], ["b", "--run", "r", "--manifest", "m"], "--torch-precision", "TORCH_PRECISIONS"),
    (["stream"], ["b"], "--provider", "ORT_PROVIDERS"),
    (["stream"], ["b"], "--smoothing", "SMOOTHINGS"),
    (["stream"], ["b"], "--format", "PCM_FORMATS"),
    (["predict"], ["b", "f.wav"], "--device", "DEVICES"),
]


@pytest.mark.parametrize(("words", "required", "option", "constant"), CHOICES)
def test_help_lists_each_choice_and_a_bad_one_is_a_usage_error(words, required, option, constant):
    """The help lists the values the library checks (its own constant); any other is refused before anything runs."""
    from typer.testing import CliRunner

    import sertrt.core.choices
    import sertrt.core.precisions
    from sertrt.cli import app

    valid = getattr(sertrt.core.choices, constant, None) or getattr(sertrt.core.precisions, constant)
    shown = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    listed = [line for line in shown.output.splitlines() if line.strip().startswith(f"{option or 'table'} <")]
    assert shown.exit_code == 0 and len(listed) == 1 and "|".join(valid) in listed[0]  # <a|b> or <list[a|b]>
    bad = CliRunner().invoke(app, [*words, *required, *([option, "bogus"] if option else ["bogus"])])
    assert bad.exit_code == 2, bad.output
    assert f"'bogus' is not one of {', '.join(map(repr, valid))}" in bad.output


def test_a_choice_pickles_as_its_plain_value():
    """Options reach spawned worker processes, which cannot look up a class the CLI made on the fly."""
    import pickle

    from sertrt.cli import choice

    value = pickle.loads(pickle.dumps(choice("Head", "hgfm", "fcn")("fcn")))
    assert value == "fcn" and type(value) is str


def test_predict_labels_each_file_and_reports_a_bad_one(bundle, tmp_path, cli):
    import numpy as np

    import sertrt as api
    from sertrt.core.audio import write_wav

    files = [tmp_path / "a.wav", tmp_path / "missing.wav", tmp_path / "long.wav"]
    rng = np.random.default_rng(0)
    write_wav(files[0], (0.2 * rng.standard_normal(12000)).astype(np.float32), 16000)
    write_wav(files[2], (0.2 * rng.standard_normal(3 * 44100)).astype(np.float32), 44100)  # past the 1 s profile
    with api.load(bundle) as rec:
        want = {str(p): rec(p) for p in (files[0], files[2])}
    text = cli("predict", bundle, *files)
    assert text.returncode == 1
    assert text.stderr.splitlines() == [f"error: {files[1]}: no such audio file", "error: 1 of 3 files could not be labelled"]
    lines = text.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(files[0]), str(files[2])]
    for line in lines:
        path, rest = line.split(": ", 1)
        assert rest == f"{want[path].label} (" + " ".join(f"{k} {v:.3f}" for k, v in want[path].probabilities.items()) + ")"
    quiet = cli("predict", bundle, *files, "--quiet")  # --quiet hides progress, never which file failed
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (text.returncode, text.stdout, text.stderr)
    machine = cli("predict", bundle, *files, "--json", "--quiet")
    assert machine.returncode == 1 and machine.stderr.strip() == "error: 1 of 3 files could not be labelled"
    rows = [json.loads(line) for line in machine.stdout.splitlines()]
    assert [r["path"] for r in rows] == list(map(str, files))
    assert rows[1] == {"path": str(files[1]), "error": f"{files[1]}: no such audio file"}
    for row in (rows[0], rows[2]):
        assert row["label"] == want[row["path"]].label
        assert row["probabilities"] == pytest.approx(want[row["path"]].probabilities, abs=1e-6)
    assert cli("predict", bundle, files[0]).returncode == 0


def test_quiet_leaves_only_results(bundle, tmp_path):
    """export logs its stages on stderr ("validating fp32 ONNX against PyTorch ..."); --quiet leaves the result line."""
    quiet = sertrt("export", bundle.parent / "run", "--out", tmp_path / "quiet", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.startswith(f"wrote {tmp_path / 'quiet'}")


def test_bench_writes_where_it_is_told_or_into_the_current_folder(tmp_path, cli):
    args = ("bench-gpu", "tiny", "--device", "cpu", "--variants", "eager-fp32", "--windows", "0.5", "--batches", "1",
            "--repeats", "2", "--warmup", "1", "--quiet")
    here = cli(*args, cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sertrt-bench"]
    assert {"tiny-cpu.json", "tiny-cpu.md"} <= {p.name for p in (tmp_path / "sertrt-bench").iterdir()}
    there = cli(*args, "--out", tmp_path / "mine", cwd=tmp_path)
    assert there.returncode == 0 and (tmp_path / "mine" / "tiny-cpu.json").is_file(), there.stderr
