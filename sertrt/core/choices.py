"""Fixed choices of options: the stage that takes the option checks it against these, and the CLI's help lists
them. They stand here, with no imports, because the CLI builds its help without importing a stage (torch, onnx,
a version check)."""

STRATEGIES = ("frozen", "semi", "full")  # train --strategy: what of the upstream trains (model.ser)
HEAD_NAMES = ("hgfm", "fcn", "cnn-sa-dnn", "lr")  # train --head (model.heads); lr: the stats-lr upstream's
SCHEDULES = ("constant", "linear", "cosine")  # train --schedule: names of transformers.get_scheduler
TABLES = ("upstreams", "heads", "finetune", "transfer", "layers")  # experiment TABLE (training.experiment)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")  # export --calibration (export.precision.int8)
TRITON_KINDS = ("auto", "cpu", "gpu")  # triton --kind: Triton instance kind (export.triton)
BACKENDS = ("ort", "trt")  # RunnerOptions.backend: ONNX Runtime, TensorRT (runtime.runners)
GROUPINGS = ("auto", "none", "speaker")  # data split --group-by; auto: speaker where every utterance names one
PROTOCOLS = ("random", "speaker", "session")  # data protocol --protocol (data.protocol)
DEVICES = ("cpu", "cuda", "tensorrt")  # predict --device, sertrt.load(device=) (runtime.api)
ORT_PROVIDERS = ("cpu", "cuda", "tensorrt")  # --provider: ONNX Runtime's execution provider (runtime.runners)
TORCH_PRECISIONS = ("fp32", "fp16", "bf16")  # --torch-precision: the PyTorch side (verify.torch_runner)
SMOOTHINGS = ("none", "ema", "majority")  # stream --smoothing (runtime.stream)
PCM_FORMATS = ("s16le", "f32le")  # stream --format: raw PCM on stdin (runtime.sources)
