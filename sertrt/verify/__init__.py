"""Is the engine the model we trained? PyTorch FP32 (the checkpoint) against a bundle's engine.

The one wing that stands on both torch (model/) and the engines (runtime/); neither of those imports it.
"""
