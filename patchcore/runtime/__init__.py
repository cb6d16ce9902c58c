"""What runs an exported model without this package: patchcore_onnx.py is copied as is onto line PCs."""
