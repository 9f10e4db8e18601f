"""From a finished job to a published bundle: the one place training publishes
(``publish``), the report's pictures (``report``), the INT8 engine's build and gate
(``quantize``) and what goes live after publishing (``release``).

May import ``models`` and the rest of ``training``; never ``service`` or ``cli``.
"""
