"""Keeps ``serve-tail`` answering its real clients while others connect and send nothing, send slowly, or send
no valid token: a deadline on each request's reading and a cap on connections that have not shown the token.

uvicorn bounds the connections it serves (``limit_concurrency``: above it, every new request gets a 503) but
reads request headers without a deadline, so a few dozen half-open connections held every client at 503.
Here, per connection:

- a request must arrive whole within ``read_timeout`` seconds of the connection opening or of the previous
  response (the body's own deadline is the app's, ``server._body``); otherwise the connection is closed;
- connections that have not yet sent a request with the valid token and are not being served are capped at
  ``max_untrusted``: one more closes the oldest of them, but never one younger than ``GRACE`` seconds. A real
  client sends its request at once and is served within that time even when a burst of connections is
  accepted together with it (the event loop accepts a backlog at once, and only then reads their requests);
  a half-open connection is not.

Only asyncio's public protocol methods are overridden, and the app tells the guard about requests through
ASGI (the scope's ``client`` is the connection's peer address), so no uvicorn internals are read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_UNTRUSTED = 32
GRACE = 1.0   # seconds a new connection has to send its request before the cap may close it

Peer = tuple[str, int]


@dataclass
class _Connection:
    transport: Any
    opened: float = field(default_factory=time.monotonic)
    trusted: bool = False         # has sent a request with the valid token
    busy: bool = False            # a request of it is in the app
    timer: asyncio.TimerHandle | None = None


class ConnectionGuard:
    """The state both halves share: the protocol reports connections, the app reports requests and tokens."""

    def __init__(self, read_timeout: float = DEFAULT_READ_TIMEOUT, max_untrusted: int = DEFAULT_MAX_UNTRUSTED):
        self.read_timeout, self.max_untrusted = read_timeout, max_untrusted
        self._connections: dict[Peer, _Connection] = {}

    # --- from the protocol ----------------------------------------------------------------------------
    def opened(self, peer: Peer | None, transport: Any) -> None:
        if peer is None:
            return
        conn = self._connections[peer] = _Connection(transport)
        self._arm(peer, conn)
        waiting = sorted((c for c in self._connections.values() if not c.trusted and not c.busy),
                         key=lambda c: c.opened)
        settled = time.monotonic() - min(GRACE, self.read_timeout / 2)
        for old in waiting[:max(0, len(waiting) - self.max_untrusted)]:
            if old.opened <= settled:
                old.transport.close()

    def closed(self, peer: Peer | None) -> None:
        conn = self._connections.pop(peer, None) if peer is not None else None
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()

    # --- from the app ---------------------------------------------------------------------------------
    def started(self, peer: Peer | None) -> None:
        """A request's headers are in: its body has the app's deadline."""
        conn = self._connections.get(peer) if peer is not None else None
        if conn is not None:
            conn.busy = True
            if conn.timer is not None:
                conn.timer.cancel()

    def finished(self, peer: Peer | None) -> None:
        """Answered: the next request has ``read_timeout`` to arrive (an idle keep-alive connection ends)."""
        conn = self._connections.get(peer) if peer is not None else None
        if conn is not None:
            conn.busy = False
            self._arm(peer, conn)

    def trust(self, peer: Peer | None) -> None:
        conn = self._connections.get(peer) if peer is not None else None
        if conn is not None:
            conn.trusted = True

    def wrap(self, app: Callable) -> Callable:
        """``app`` as an ASGI app that reports each HTTP request's start and end to this guard."""
        async def guarded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            peer = peer_of(scope.get("client"))
            self.started(peer)
            try:
                await app(scope, receive, send)
            finally:
                self.finished(peer)
        return guarded

    def _arm(self, peer: Peer, conn: _Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = asyncio.get_running_loop().call_later(self.read_timeout, self._expire, peer)

    def _expire(self, peer: Peer) -> None:
        conn = self._connections.get(peer)
        if conn is not None and not conn.busy:
            conn.transport.close()


def peer_of(address: Any) -> Peer | None:
    """(host, port) of a socket peer name or an ASGI ``client``; None when there is none (a Unix socket)."""
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


def guarded_protocol(guard: ConnectionGuard) -> type:
    """uvicorn's h11 protocol class, reporting each connection to ``guard`` (``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._edgekit_peer = peer_of(transport.get_extra_info("peername"))
            guard.opened(self._edgekit_peer, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.closed(getattr(self, "_edgekit_peer", None))
            super().connection_lost(exc)

    return GuardedH11Protocol
