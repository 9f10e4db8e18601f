"""The prediction APIs, each a thin form over the same predictor: native (``api``,
``bodies``, ``uploads``, ``explain``), TensorFlow Serving's REST form (``tfserving``,
``tfserving_bodies``) and the Open Inference Protocol (``kserve``, ``kserve_bodies``,
``kserve_tensors``).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
