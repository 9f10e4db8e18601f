"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), on when
``KTL_GRPC_PORT`` is set: a thin transport over ``service.protocols.kserve_core``, the same
functions the REST routes answer with (models, versions and labels, the canary,
the engine, the decision, API keys), so the two forms cannot drift apart.

Owns: the protocol's messages (``inference.proto`` and its generated, committed
``inference_pb2``), reading and writing them (``tensors``), and the server that one
gunicorn worker runs beside its HTTP threads (``server``). May import the rest of
``service`` and ``models``; nothing in ``service`` imports it but gunicorn.conf.py,
so ``grpcio`` stays an optional extra (``ktl[grpc]``).
"""
