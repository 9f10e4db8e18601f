"""The training job queue, kept in the store: the queue itself (``jobs``), how the runner
and its training processes are started (``job_runner``) and following a job
(``job_events``). Shared by the service, the runner and the CLI.

May import the rest of ``models``; never ``training``, ``service`` or ``cli``.
"""
