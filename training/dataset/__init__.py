"""The data a job trains on: finding and decoding the labelled images (``data``), the
content-hash split into train, val and test (``splits``), the test split kept DATA's own
through corrections (``held_out``, ``corrections``), the health report (``health``) and the
built-in demo dataset (``demo``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
