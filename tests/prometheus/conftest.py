"""A real Prometheus server (Debian package ``prometheus``) started by the test on 127.0.0.1.

The fixture writes a temporary ``prometheus.yml`` (1 s scrape and evaluation
intervals, the given rule files, one static scrape job), starts
``/usr/bin/prometheus`` with its TSDB in ``tmp_path`` on a free port, waits for
``/-/ready`` and stops the process at the end of the test. It never touches the
system service or port 9090.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.testing.broker import free_port

#: Seconds to wait for /-/ready; Prometheus replays an empty WAL in well under a second.
_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class PrometheusServer:
    """A running Prometheus: its base URL and the files it was started with."""

    url: str  # e.g. http://127.0.0.1:40123
    config_path: Path
    log_path: Path

    def log(self) -> str:
        """The server's stderr so far (for assertion messages)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


StartPrometheus = Callable[[Sequence[str], Sequence[Path]], PrometheusServer]


@pytest.fixture
def prometheus_binary() -> str:
    """Path of the ``prometheus`` server binary; skipped where absent, required in CI."""
    path = shutil.which("prometheus")
    if path is None and os.access("/usr/bin/prometheus", os.X_OK):
        path = "/usr/bin/prometheus"  # Debian installs it there; PATH may lack /usr/bin in CI shells
    if path is None:
        if os.environ.get("CARDMON_REQUIRE_PROMTOOL") == "1":
            pytest.fail("prometheus not found and CARDMON_REQUIRE_PROMTOOL=1")
        pytest.skip("prometheus not installed (Debian package 'prometheus')")
    return path


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[StartPrometheus]:
    """A factory ``start(targets, rule_files)`` that runs Prometheus scraping ``targets``.

    ``targets`` are ``host:port`` of ``/metrics`` endpoints (job ``cardmon``). Every
    process started is terminated (then killed after 10 s) when the test ends.
    """
    processes: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(targets: Sequence[str], rule_files: Sequence[Path]) -> PrometheusServer:
        folder = tmp_path / f"prometheus-{len(processes)}"
        folder.mkdir()
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "cardmon", "static_configs": [{"targets": list(targets)}]}],
        }
        config_path = folder / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        log_path = folder / "prometheus.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [prometheus_binary, f"--config.file={config_path}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=folder,
        )
        processes.append((process, log_file))
        server = PrometheusServer(f"http://127.0.0.1:{port}", config_path, log_path)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after {_READY_TIMEOUT_S} s:\n{server.log()}")
            time.sleep(0.1)

    yield start

    for process, log_file in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
