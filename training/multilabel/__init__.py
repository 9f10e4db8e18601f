"""Multi-label training (issue 31): images with zero or more labels each, read from a
CSV ``path,labels`` (labels separated by ``;``). It owns the listing and the split
(``data``), the per-label figures, calibration and thresholds (``figures``,
``decisions``) and the job (``job``), and publishes through ``models``' bundle.

It may import ``models`` and ``training``'s shared pieces (ingestion helpers, the
split's hash, phases, the fine-tuning helpers, publishing). Outside this package,
``training.job`` hands it a multi-label job, ``training.evaluation.scoring`` a multi-label
version to score (``ktl evaluate``) and ``training.diagnosis.doctor`` asks it whether DATA is
a multi-label CSV (which the doctor refuses yet); nothing else imports it.
"""
