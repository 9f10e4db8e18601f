"""What the tests share, and the benchmarks borrow (never the reverse): a gunicorn
harness, one tiny-model builder, generated datasets, and the ``ktl`` command line
run as a process."""
