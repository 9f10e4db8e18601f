"""Running queued training jobs: the job runner of a store (``runner``, its settings in
``settings``), the process that trains one job (``runner_child``), its launchers on
this machine (``runner_local``) or on Kubernetes (``kube``, ``kube_manifest``), and an
unfinished job's saved state for ``--resume`` (``state``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
