"""The SMTP transport: the configured server, with STARTTLS or TLS and a login from environment variables."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from email.message import EmailMessage

from risk.core.settings import DeliverySettings
from risk.delivery.transport import PermanentFailure, TemporaryFailure


def send(cfg: DeliverySettings, msg: EmailMessage, recipient: str, key: str) -> None:
    """Hand the message to the configured SMTP server; 4xx replies and lost connections are temporary."""
    s = cfg.smtp
    try:
        if s.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with client:
            if s.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            user = os.environ.get(s.username_env) if s.username_env else None
            password = os.environ.get(s.password_env) if s.password_env else None
            if user and password:
                client.login(user, password)
            client.send_message(msg, to_addrs=[recipient])
    except smtplib.SMTPNotSupportedError as e:
        if recipient.isascii():  # AUTH the server does not offer: the settings may be fixed before the next try
            raise TemporaryFailure(f"{type(e).__name__}: {e}") from e
        # smtplib asks for SMTPUTF8 by itself when an address needs it; a server without it never will take it
        raise PermanentFailure(f"the server does not accept addresses with non-ASCII characters (no SMTPUTF8): "
                               f"{recipient}") from e
    except smtplib.SMTPRecipientsRefused as e:
        code, reason = next(iter(e.recipients.values()))
        raise (TemporaryFailure if 400 <= code < 500 else PermanentFailure)(f"{code} {reason.decode(errors='replace')}") from e
    except smtplib.SMTPResponseException as e:
        error = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        raise (TemporaryFailure if 400 <= e.smtp_code < 500 else PermanentFailure)(f"{e.smtp_code} {error}") from e
    except (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError) as e:
        raise TemporaryFailure(f"{type(e).__name__}: {e}") from e
