"""Gunicorn logging for ktl: one JSON object per request in the access log, every
log on stderr, and the service's own ``ktl`` loggers on gunicorn's error handler."""

from __future__ import annotations

import json
import logging
import os
import sys

from gunicorn import glogging

from models.timestamps import utc_now


class JsonLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        # Gunicorn writes an access log of "-" to stdout; the house rule is stderr.
        if cfg.accesslog == "-":
            self._set_handler(
                self.access_log, "-", logging.Formatter("%(message)s"), stream=sys.stderr
            )
        service_log = logging.getLogger("ktl")
        service_log.handlers = list(self.error_log.handlers)
        service_log.setLevel(self.loglevel)
        service_log.propagate = False

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        entry = {
            "time": utc_now(),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "pid": os.getpid(),
        }
        self.access_log.info(json.dumps(entry))
