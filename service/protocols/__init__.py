"""The prediction APIs, each a thin form over the same predictor: native (``api``,
``bodies``, ``uploads``, ``explain``), TensorFlow Serving's REST form (``tfserving``,
``tfserving_bodies``) and the Open Inference Protocol (``kserve``, ``kserve_bodies``,
``kserve_tensors``; its answers with no transport in them, ``kserve_core``, which the
REST routes and the gRPC form in ``service.oip_grpc`` share).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
