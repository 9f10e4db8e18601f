"""The scoring job behind ``ktl score``: a published version applied to every image
of a folder, a CSV or an fsspec prefix (``memory://``, ``s3://`` with s3fs), one
JSONL line per image, resumable and shardable.

It owns listing the inputs and taking a shard of them (``inputs.py``), the output
file, what a rerun skips and the per-batch fsync (``output.py``), the progress line
(``progress.py``) and the loop itself (``job.py``). It imports only ``models``: the
body of each line is ``models.predictions``' native predict body, the engine is
``Bundle.engine``'s choice (the service's rule), the decoding ``models.preprocessing``'.
"""
