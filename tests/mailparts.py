"""Reading the parts of a received or built message in tests."""

from __future__ import annotations

from email.message import EmailMessage


def html_of(msg: EmailMessage) -> str:
    """The HTML body."""
    part = msg.get_body(("html",))
    assert part is not None
    return part.get_content()


def text_of(msg: EmailMessage) -> str:
    """The plain-text body."""
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()
