"""How `risk serve` runs the application under uvicorn: timeouts, header limits and whom to believe.

uvicorn times out only idle keep-alive connections; a client that connects and
sends nothing, or half a request line and headers a byte at a time, holds its
connection for ever, and fifty of them exhaust a server. :class:`TimedH11Protocol`
gives every request ``web.header_timeout_s`` to arrive whole.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from risk.core.settings import Settings

log = logging.getLogger(__name__)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request (line, headers and body).

    The clock starts when the connection opens, and again with the first byte of each further request on a
    kept-alive connection (the wait for that byte is uvicorn's keep-alive timeout). It stops once h11 has the
    whole request or the application has begun its response."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _receiving(self) -> bool:
        """Whether the request is still arriving and nothing has been answered yet."""
        them, us = self.conn.their_state, self.conn.our_state
        return them is h11.IDLE or (them is h11.SEND_BODY and us is h11.SEND_RESPONSE)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._receiving() and not self.transport.is_closing():
            log.info("closed a connection from %s: no whole request within %s s", self.client,
                     self.header_timeout_s)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request."""
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        """Start the clock when part of a request is in, stop it once all of it is."""
        super().handle_events()
        if not self._receiving():
            self._disarm()
        elif self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """No clock for a closed connection."""
        self._disarm()
        super().connection_lost(exc)


def protocol_for(settings: Settings) -> type[TimedH11Protocol]:
    """:class:`TimedH11Protocol` with this configuration's ``web.header_timeout_s``."""
    return type("ConfiguredH11Protocol", (TimedH11Protocol,), {"header_timeout_s": settings.web.header_timeout_s})


def server_config(app: FastAPI, settings: Settings, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration `risk serve` runs ``app`` under."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, server_header=False,
        http=protocol_for(settings), ws="none",
        timeout_keep_alive=settings.web.keep_alive_s,
        h11_max_incomplete_event_size=settings.web.max_header_bytes,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; the application decides instead,
        # from web.trusted_proxies, so that the login limits count the real client
        proxy_headers=False)
