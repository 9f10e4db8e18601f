"""What a trained model is worth, on data it did not learn from: validation metrics
(``evaluate``), calibration and the decision threshold (``calibration``, ``decision``,
``final``), scoring a published version (``scoring``) and comparing backbones'
features before training (``compare``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
