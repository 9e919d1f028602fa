"""A TCP gate in front of a loopback server that can refuse connections or hang them.

``LoopbackServer.set_down`` drops connections after accepting them; real outages also look
like "connection refused" (nothing listens) and "hangs" (accepted, never answered). The gate
listens on its own port and forwards to the server while open.
"""

from __future__ import annotations

import socket
import threading
from typing import List, Optional

PASS, REFUSE, HANG = "pass", "refuse", "hang"


class FaultGate:
    """Forwards 127.0.0.1:port to a target port; can refuse or hang new connections."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._lock = threading.Lock()
        self._mode = PASS
        self._listener: Optional[socket.socket] = None
        self._held: List[socket.socket] = []
        self._closed = False
        self.port = self._listen(0)

    @property
    def url(self) -> str:
        """The base URL a client should use."""
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return int(listener.getsockname()[1])

    def set_mode(self, mode: str) -> None:
        """Switch to PASS, REFUSE (nothing listens) or HANG (accept, never answer)."""
        with self._lock:
            previous, self._mode = self._mode, mode
            if mode == REFUSE and self._listener is not None:
                _close(self._listener)  # shutdown() too: close() alone leaves accept() blocked
                self._listener = None
            if mode != HANG:
                for held in self._held:
                    _close(held)
                self._held.clear()
        if previous == REFUSE and mode != REFUSE:
            self._listen(self.port)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._lock:
            self._closed = True
            if self._listener is not None:
                _close(self._listener)
                self._listener = None
            for held in self._held:
                _close(held)
            self._held.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: refusing, or the gate is closed
            with self._lock:
                if self._closed:
                    _close(conn)
                    return
                if self._mode == HANG:
                    self._held.append(conn)
                    continue
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=10)
        except OSError:
            _close(conn)
            return
        upstream.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                _close(src)
                _close(dst)

        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        pump(upstream, conn)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
