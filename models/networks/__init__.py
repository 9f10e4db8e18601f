"""The networks ktl builds: the backbone registry (``backbones``), the classifier around
a backbone (``classifier``), the serializable layers inside a bundle (``layers``), and
EfficientNet-Lite with its converted ImageNet weights (``lite``, ``torch_legacy``).

May import the rest of ``models``; never ``training``, ``service`` or ``cli``.
"""
