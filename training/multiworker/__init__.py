"""Training on several devices or machines: where a job trains (``cluster``) and how the
workers of a multi-worker job agree (``distributed``). A job reaches this package only
through ``training.distribution.choose``: on one device it never does.

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
