"""The fixed choices a user names in flags, job files and requests. No TensorFlow
here: the command line validates flags with these before importing it."""

from __future__ import annotations

POOLING = ("avg", "max")  # global pooling between the backbone and the head
EXPORT_FORMATS = ("savedmodel", "onnx", "tflite")  # ktl export --format
EXPLAIN_METHODS = ("gradcam", "deconvnet")  # ktl explain --method
# ktl predict --engine, KTL_ENGINE: auto serves INT8 where its agreement passed the gate
ENGINES = ("auto", "keras", "int8")
# KTL_INT8_MIN_AGREEMENT's default: the top-1 agreement with the float model, on every
# split checked, that auto needs to serve INT8
DEFAULT_GATE = 0.99
