"""The HTTP classification service (Flask under gunicorn). Importing this package
imports nothing else: ``ktl serve`` reads where gunicorn's settings are."""

from pathlib import Path

GUNICORN_CONF = Path(__file__).with_name("gunicorn.conf.py")
