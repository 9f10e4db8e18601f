"""``ktl doctor``: what in a dataset deserves a look before training on it. Out-of-sample
probabilities (``probe``), label issues and outliers (``suspects``), near-duplicates
(``near_duplicates``), the whole check (``doctor``) and what it writes
(``doctor_report``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
