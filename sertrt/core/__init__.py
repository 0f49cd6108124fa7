"""The ground floor: formats and helpers every stage reads. The standard library and numpy only; what a
device may lack (soundfile, soxr, cryptography, tensorrt, cuda-python) is imported lazily, where needed."""
