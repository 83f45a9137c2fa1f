"""The ``/metrics`` HTTP endpoint, a thin handle over ``prometheus_client``'s server."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "serve"]


class MetricsServer:
    """A running metrics endpoint; close it with :meth:`close` or a ``with`` block.

    Attributes:
        host: the address it listens on.
        port: the bound TCP port (the real one when ``0`` was asked for).
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        address = server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])
        self._closed = False

    @property
    def url(self) -> str:
        """The scrape URL, e.g. ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, release the socket and join the server thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"MetricsServer(url={self.url!r}, {state})"


def serve(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` in the Prometheus text format on a background thread.

    Args:
        registry: the registry to expose.
        host: address to bind, e.g. ``127.0.0.1`` or ``0.0.0.0``.
        port: TCP port; ``0`` picks a free one (read it from the handle's ``port``).

    Returns:
        A handle whose :meth:`MetricsServer.close` stops the server.

    Raises:
        OSError: if the address cannot be bound.
    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
