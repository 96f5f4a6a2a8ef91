"""The page renderer: every template of the review pages with the user, CSRF token and flash message."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from risk.core.settings import Settings
from risk.web.accounts import User
from risk.web.auth import csrf_token, session_user
from risk.web.common import build_environment


class Pages:
    """Renders templates/web/*.html.j2 with what every page needs (user, CSRF token, flash message)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = build_environment(settings)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """An HTML response from ``web/<template>``."""
        user: User | None = session_user(request)
        flash = request.session.pop("flash", None) if user else None
        html = self.env.get_template(f"web/{template}").render(
            user=user, csrf_token=csrf_token(request), flash=flash, region=self.settings.region.name,
            path=request.url.path, **context)
        return HTMLResponse(html, status_code=status)
