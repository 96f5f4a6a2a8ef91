"""What every transport shares: how it reports a failure, how a message is written on the wire, its signature."""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.message import EmailMessage

from risk.core.settings import DeliverySettings


class TemporaryFailure(Exception):
    """Worth trying again later."""


class PermanentFailure(Exception):
    """Will not succeed by retrying."""


def wire_policy(recipient: str) -> policy.EmailPolicy:
    """How a message to ``recipient`` is written: plain SMTP, or SMTPUTF8 when the address has non-ASCII
    characters (an encoded word is not allowed inside an address, so such a message must travel as UTF-8)."""
    return policy.SMTP if recipient.isascii() else policy.SMTPUTF8


Send = Callable[[DeliverySettings, EmailMessage, str, str], None]
"""A transport: settings, the message, one recipient and the message's idempotency key (which names its file)."""
