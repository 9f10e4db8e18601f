"""The two-phase transfer recipe: which phases a job trains (``phases``), the head on
cached features then the top block at a low rate (``finetune``, ``recipe``), how each
phase learns (``regime``, ``callbacks``, ``lr_find``) and starting from a published
version (``warm_start``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
