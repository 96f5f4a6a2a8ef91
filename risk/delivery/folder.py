"""The file transport: each message as an .eml file in a folder, for a first run with no mail server."""

from __future__ import annotations

from email.message import EmailMessage

from risk.core.files import atomic_path
from risk.core.settings import DeliverySettings
from risk.delivery.transport import wire_policy


def send(cfg: DeliverySettings, msg: EmailMessage, recipient: str, key: str) -> None:
    """Write the message to ``delivery.outbox_dir`` as KEY.eml, atomically: a re-send replaces the same file."""
    with atomic_path(cfg.outbox_dir / f"{key}.eml") as tmp:
        tmp.write_bytes(msg.as_bytes(policy=wire_policy(recipient)))
