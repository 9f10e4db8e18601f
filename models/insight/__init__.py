"""Seeing inside convolutional networks: a network's anatomy layer by layer
(``inspect``), Grad-CAM and feature maps (``explain``), DeconvNet projections
(``deconvnet``, ``unpooling``) and the classic networks kept for teaching
(``classic``).

May import the rest of ``models``; never ``training``, ``service`` or ``cli``.
"""
