"""`risk serve`'s server times out slow and idle clients and limits the size of a request's headers (a real
uvicorn on a loopback port, raw sockets as the clients)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from fastapi import FastAPI
from web_support import WebState, app_for, build_state, serving

HALF_A_HEADER = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
WHOLE_REQUEST = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
GIVE_UP_S = 5.0
"""How long a test client waits for the server to act before calling it a failure."""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> WebState:
    return build_state(tmp_path_factory)


@pytest.fixture(scope="module")
def server(state: WebState) -> Iterator[int]:
    """One server for the module: 0.6 s for a request, 2 s of keep-alive, 1024 bytes of headers."""
    app: FastAPI = app_for(state, header_timeout_s=0.6, keep_alive_s=2, max_header_bytes=1024)
    with serving(app) as port:
        yield port


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S)
    sock.settimeout(GIVE_UP_S)
    return sock


def _closed_after(sock: socket.socket, since: float) -> float:
    """Seconds from ``since`` until the server closed the connection (reading whatever it sent first)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for over {GIVE_UP_S} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - since


def test_slow_clients_that_send_half_a_header_and_stall_are_disconnected_within_the_timeout(server: int) -> None:
    with ExitStack() as stack:
        socks = [stack.enter_context(_connect(server)) for _ in range(5)]
        start = time.monotonic()
        for sock in socks:
            sock.sendall(HALF_A_HEADER)
        waited = [_closed_after(sock, start) for sock in socks]
    assert min(waited) >= 0.5 and max(waited) < 3.0, waited


def test_a_client_that_connects_and_says_nothing_is_disconnected(server: int) -> None:
    with _connect(server) as sock:
        assert 0.5 <= _closed_after(sock, time.monotonic()) < 3.0


def test_a_client_dribbling_a_byte_at_a_time_is_cut_off_at_the_deadline(server: int) -> None:
    # each byte arrives well within the timeout; the whole request never does
    with _connect(server) as sock:
        start = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for byte in HALF_A_HEADER:  # 54 bytes: 5.4 s at most
                sock.send(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - start < 3.0


def test_a_request_sent_in_time_is_answered_and_an_idle_connection_closes_after_keep_alive_s(
        server: int) -> None:
    with _connect(server) as sock:
        sock.sendall(WHOLE_REQUEST[:20])
        time.sleep(0.3)  # slow, but within the 0.6 s
        sock.sendall(WHOLE_REQUEST[20:])
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        while b"</html>" not in first:
            first += sock.recv(65536)
        # a second request on the kept-alive connection gets the whole timeout again
        time.sleep(0.3)
        sock.sendall(WHOLE_REQUEST)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        waited = _closed_after(sock, answered)
    assert 1.5 <= waited < 4.0  # the keep-alive timeout, not the request's


def test_headers_up_to_max_header_bytes_are_waited_for_and_one_byte_more_is_refused(server: int) -> None:
    head = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
    with _connect(server) as sock:
        sock.sendall(head + b"a" * (1024 - len(head)))  # exactly the limit, not yet ended
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(65536)  # no answer: still waiting for the rest
        sock.settimeout(GIVE_UP_S)
        sock.sendall(b"a")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
