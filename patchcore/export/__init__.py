"""Export: a model folder as one ONNX graph (and OpenVINO IR), checked against evaluate's scores."""
