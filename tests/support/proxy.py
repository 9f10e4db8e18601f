"""Debian's nginx running the shipped deploy/nginx/ktl.conf on 127.0.0.1, in front of
a ktl on 127.0.0.1, in its own process group and stopped by whoever started it; and
clients that send half a request and wait."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "ktl.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def site_config(upstream: str, listen: str) -> str:
    """The shipped file with its two marked lines changed, as its comment says."""
    text = SHIPPED.read_text()
    text, servers = re.subn(r"server \S+;(\s+# <-)", rf"server {upstream};\1", text)
    text, listens = re.subn(r"listen \S+;(\s+# <-)", rf"listen {listen};\1", text)
    assert (servers, listens) == (1, 1), "the marked lines of deploy/nginx/ktl.conf moved"
    return text


class Nginx:
    """``with Nginx(work, upstream="127.0.0.1:8000") as proxy:`` serves on proxy.base."""

    def __init__(self, work: Path, upstream: str):
        assert NGINX is not None
        self.work = Path(work)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.upstream = upstream
        self.process: subprocess.Popen | None = None

    def _main_config(self) -> Path:
        """The http context around the shipped file, with every path in ``work``."""
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "ktl.conf").write_text(site_config(self.upstream, f"127.0.0.1:{self.port}"))
        temp = "\n".join(
            f"  {kind}_temp_path {self.work / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers read the temp folders
        config = self.work / "nginx.conf"
        config.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.work / 'nginx.pid'};\n"
            f"error_log {self.work / 'error.log'} warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n  access_log {self.work / 'access.log'};\n{temp}\n"
            f"  include {self.work / 'ktl.conf'};\n}}\n"
        )
        return config

    def start(self) -> Nginx:
        config = self._main_config()
        command = [NGINX, "-c", str(config), "-p", str(self.work), "-e", str(self.work / "e.log")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, (self.work / "e.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen in 20 s"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def stalled_clients(port: int, count: int = 40):
    """``count`` connections to 127.0.0.1:port, each holding half a request header."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: ktl\r\nContent-")
            sockets.append(sock)
        time.sleep(0.5)  # let the server take them in
        yield sockets
    finally:
        for sock in sockets:
            sock.close()
