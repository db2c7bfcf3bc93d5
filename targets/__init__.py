"""Output formats, one module each: onnx (issue 3/4), tflite (issue 4), coreml (issue 5)."""
