"""The ground floor: formats and helpers every stage reads (audio, labels, data manifests, model dims,
checkpoint header, bundle card, engine record, the runner protocol, precision limits, metrics, atomic
writes, output folders, errors, versions). The standard library and numpy only; a few imports that a
device may lack (soundfile, soxr, cryptography, tensorrt, cuda-python) are made lazily, where needed."""
