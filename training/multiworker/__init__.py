"""Training on several devices or machines: where a job trains (``cluster``) and how the
workers of a multi-worker job agree (``distributed``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
