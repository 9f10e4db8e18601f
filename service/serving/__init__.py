"""The models a worker serves: the loaded-model registry (``registry``), which version
answers a request (``routing``), one version's preprocess, inference and postprocess
(``predictor``) and dynamic micro-batching (``batching``).

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
