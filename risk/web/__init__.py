"""The planners' review pages (`risk serve`): flagged tracts and the map, tracts, the model, decisions, the API."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # the app pulls in the whole product; `risk user add` and every other command need only the accounts
    if name == "create_app":
        from risk.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
