"""A trained detector as a file that runs without the training stack (ONNX, TorchScript)."""
