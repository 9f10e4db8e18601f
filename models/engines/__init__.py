"""Running a published model: one compiled Keras forward pass (``inference``), the INT8
ONNX engine (``int8``), test-time augmentation (``tta``) and exports for other runtimes
(``export``).

May import the rest of ``models``; never ``training``, ``service`` or ``cli``.
"""
