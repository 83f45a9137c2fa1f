"""A TCP proxy that can go silent without closing anything: a half-open connection on demand.

Between cardmon and PostgreSQL, :class:`StallingProxy` forwards bytes both ways until
:meth:`StallingProxy.stall`. From then on it forwards nothing and closes nothing:
every connection open at that moment stays open and silent for good (what a
connection looks like after a NAT or firewall dropped its state, or a peer host
vanished: the client's kernel still gets TCP acknowledgements from the proxy's, so
no keepalive or TCP timeout notices). New connections are accepted and left silent
too, until :meth:`StallingProxy.resume`, after which new connections are forwarded
again (the stalled ones stay dead).
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Self

__all__ = ["StallingProxy"]


class StallingProxy:
    """Forward ``127.0.0.1:port`` to ``target``; a context manager.

    Args:
        target_host: where to forward to.
        target_port: its port.

    Attributes:
        port: the proxy's port on 127.0.0.1.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()  # guards the attributes below
        self._stalled = False
        self._peers: dict[socket.socket, socket.socket] = {}  # <socket: the one it forwards to>
        self._silent: list[socket.socket] = []  # connections never forwarded again (kept open)
        self._doomed: set[socket.socket] = set()  # open at a stall: silenced at their next byte
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stalling-proxy", daemon=True)

    def start(self) -> Self:
        """Start forwarding."""
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stall(self) -> None:
        """Go silent: forward nothing more on any connection, open or new; close nothing."""
        with self._lock:
            self._stalled = True
            self._doomed |= set(self._peers)

    def resume(self) -> None:
        """Forward new connections again (those open during the stall stay silent)."""
        with self._lock:
            self._stalled = False

    @property
    def forwarding(self) -> int:
        """Connections being forwarded now."""
        with self._lock:
            return len(self._peers) // 2

    def close(self) -> None:
        """Stop the proxy and close every socket."""
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in [*self._peers, *self._silent, self._listener]:
                sock.close()
            self._peers.clear()
            self._silent.clear()
        self._selector.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        with self._lock:
            if self._stalled:
                self._silent.append(client)  # accepted by the kernel, never answered
                return
        try:
            server = socket.create_connection(self._target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._peers[client], self._peers[server] = server, client
        for sock in (client, server):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        with self._lock:
            if self._stalled or sock in self._doomed:
                # Silence both directions for good: unregister, keep the sockets open.
                peer = self._peers.pop(sock, None)
                if peer is not None:
                    self._peers.pop(peer, None)
                    for each in (sock, peer):
                        self._selector.unregister(each)
                        self._silent.append(each)
                return
            peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            try:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
                return
            except OSError:
                pass
        with self._lock:  # one side closed: close both
            self._peers.pop(sock, None)
            self._peers.pop(peer, None)
        for each in (sock, peer):
            self._selector.unregister(each)
            each.close()
