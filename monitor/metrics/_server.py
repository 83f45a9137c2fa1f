"""The ``/metrics`` HTTP endpoint: a WSGI app on ``wsgiref``, modelled on ``prometheus_client``'s.

A ``GET`` answers the Prometheus text format 0.0.4 built by
:class:`~monitor.metrics.Exposition` (frame-backed per-terminal families rendered from
polars, everything else by ``generate_latest``), gzip-compressed when the request
says ``Accept-Encoding: gzip`` as Prometheus does. The text format is served even
when the scraper prefers OpenMetrics; Prometheus accepts it. Anything else
(``OPTIONS``, other methods, ``?name[]=`` filters, ``/favicon.ico``) is answered by
``prometheus_client.make_wsgi_app`` on the same registry.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, gzip_accepted
from prometheus_client.registry import Collector

from monitor.metrics._exposition import Exposition

__all__ = ["MetricsServer", "metrics_app", "serve"]

class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One daemon thread per request, so a slow scrape never blocks the next one."""

    daemon_threads = True


class _SilentHandler(WSGIRequestHandler):
    """Do not log every scrape to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def metrics_app(registry: Collector) -> WSGIApplication:
    """A WSGI application serving ``registry`` through the fast exposition.

    Args:
        registry: the registry to expose.

    Returns:
        The WSGI callable; mount it anywhere (every path but ``/favicon.ico`` serves metrics).
    """
    exposition = Exposition(registry)
    fallback = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") == "/favicon.ico"
                or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))):
            result: Iterable[bytes] = fallback(environ, start_response)
            return result
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        chunks: list[bytes]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            chunks = [exposition.render_gzip()]
            headers.append(("Content-Encoding", "gzip"))
        else:
            chunks = exposition.render()
        headers.append(("Content-Length", str(sum(map(len, chunks)))))
        start_response("200 OK", headers)
        return chunks

    return app


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


def serve(registry: Collector, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` in the Prometheus text format on a background thread.

    Args:
        registry: the registry to expose; its :class:`~monitor.metrics.FrameFamily`
            families are rendered by the fast path, the rest by ``generate_latest``.
        host: address to bind, e.g. ``127.0.0.1``, ``0.0.0.0`` or ``::``.
        port: TCP port; ``0`` picks a free one (read it from the handle's ``port``).

    Returns:
        A handle whose :meth:`MetricsServer.close` stops the server.

    Raises:
        OSError: if the address cannot be bound.
    """
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class _Server(_ThreadingWSGIServer):
        address_family = family

    server = make_server(str(address[0]), port, metrics_app(registry), _Server,
                         handler_class=_SilentHandler)
    thread = threading.Thread(target=server.serve_forever, name="cardmon-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
