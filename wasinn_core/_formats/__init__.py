"""Model-format readers shared by the core and the backends: encoding detection and ONNX signatures."""
