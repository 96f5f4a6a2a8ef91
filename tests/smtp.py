"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording what it receives.

The server can be told to answer chosen RCPT or DATA replies ("451 4.3.0 try
later", "550 5.1.1 no such user"), either for the next few commands or for one
address every time, to require AUTH with given credentials, and to take its
time over DATA. It can be stopped and started again on the same port, so a
test can take it down and bring it back between two sends.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_string, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Received:
    """One message the server accepted, as it came over the wire."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    authenticated: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        """The message parsed with the modern e-mail API (headers as UTF-8: the bytes parser would leave an
        SMTPUTF8 message's non-ASCII address as surrogates)."""
        return message_from_string(self.data.decode("utf-8", "surrogateescape"),  # type: ignore[return-value]
                                   policy=policy.default)

    @property
    def header_block(self) -> bytes:
        """The raw header lines, up to the first empty line."""
        return self.data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]


@dataclass
class Recorder:
    """The aiosmtpd handler: records messages and plays scripted replies."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    """Replies to the next RCPT commands, one each; when empty, RCPT is accepted."""
    data_replies: list[str] = field(default_factory=list)
    """Replies to the next DATA commands, one each; when empty, the message is accepted."""
    reply_for: dict[str, str] = field(default_factory=dict)
    """A reply to RCPT for one address, every time."""
    rcpt_seen: list[str] = field(default_factory=list)
    """Every RCPT address in order, accepted or not."""
    logins: list[tuple[str, str]] = field(default_factory=list)
    """Every AUTH attempt (user, password), successful or not."""
    require_auth: bool = False
    """Refuse MAIL with 530 until the client has authenticated."""
    data_delay_s: float = 0.0
    first_rcpt: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          mail_options: list[str]) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.rcpt_seen.append(address)
            reply = self.reply_for.get(address) or (self.rcpt_replies.pop(0) if self.rcpt_replies else None)
        self.first_rcpt.set()
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
            if reply:
                return reply
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content,
                                          bool(session.authenticated), login))
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    """A real aiosmtpd server on 127.0.0.1 that can be stopped and started again on the same port.

    With ``credentials`` the server offers AUTH without TLS (loopback only) and
    requires it before MAIL; with ``offer_auth=False`` it offers no AUTH at all; with ``smtputf8=False`` it
    does not offer SMTPUTF8 (addresses with non-ASCII characters).
    """

    def __init__(self, port: int | None = None, *, credentials: tuple[str, str] | None = None,
                 offer_auth: bool = True, smtputf8: bool = True) -> None:
        self.smtputf8 = smtputf8
        self.host = HOST
        self.port = port or free_port()
        self.credentials = credentials
        self.offer_auth = offer_auth
        self.handler = Recorder()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        """Messages accepted so far, in order."""
        return self.handler.messages

    @property
    def running(self) -> bool:
        return self._controller is not None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        with self.handler.lock:
            self.handler.logins.append((user, password))
        ok = self.credentials is not None and (user, password) == self.credentials
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> SmtpServer:
        """Listen (again) on the same port."""
        assert self._controller is None, "already running"
        kwargs: dict[str, Any] = {}
        if self.offer_auth or self.credentials is not None:
            # AUTH without TLS is fine on loopback; the handler, not aiosmtpd, enforces it (no warning)
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self.handler.require_auth = self.credentials is not None
        controller = Controller(self.handler, hostname=self.host, port=self.port, ready_timeout=10,
                                enable_SMTPUTF8=self.smtputf8, **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; connections are refused until ``start`` is called again."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
