"""Training jobs over HTTP: the routes (``jobs``) and their bodies (``job_bodies``), the
event stream (``events``), and safe extraction of uploaded dataset archives
(``archives``, ``tar_headers``). The jobs themselves run in ``training.jobs``; this
package only queues and follows them through ``models.jobqueue``.

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
