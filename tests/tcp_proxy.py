"""A TCP forwarder that a test can cut, to make a database unreachable for real without
touching the machine's own server.

It also carries PostgreSQL (which listens on loopback only) onto the scale-out tests'
private bridge. There, `dead_peer_after` makes it notice a client whose network
vanished (TCP keepalive and TCP_USER_TIMEOUT on the client side) and close that
client's database connection, so PostgreSQL rolls back its open transaction and frees
its row locks: what a PostgreSQL server set up with `tcp_keepalives_idle` and
`tcp_user_timeout` does for a client machine that disappears.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class TcpProxy:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        dead_peer_after: float | None = None,
    ) -> None:
        self.target = target
        self.dead_peer_after = dead_peer_after
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # unreachable: refuse by closing at once
                continue
            if self.dead_peer_after is not None:
                _detect_dead_peer(client, self.dead_peer_after)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()


def _detect_dead_peer(sock: socket.socket, seconds: float) -> None:
    """Fail the socket once its peer stops answering for about `seconds`: keepalive
    probes while idle, TCP_USER_TIMEOUT while data waits for an acknowledgement."""
    probe = max(1, int(seconds // 4))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))
