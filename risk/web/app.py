"""The review pages' application: routes, sessions, security headers and error pages.

Errors a person can fix (a bad form field, an unknown tract, a missing run)
are shown with their message; anything else is logged with its traceback and
shown as a plain apology, never a stack trace.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from risk.core.errors import RiskError, UnknownArea
from risk.core.settings import Settings
from risk.web import accounts, admin, api, auth, model_page, views
from risk.web.common import WebError, http_status
from risk.web.data import WebData
from risk.web.pages import Pages

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "risk_session"

ROUTERS = (auth.router, views.router, model_page.router, admin.router, api.router, api.exports, api.docs)
"""Every router the application serves (the tests check each route against each role)."""

SECURITY_HEADERS = {
    # no inline script anywhere: an injected <script> would not run even if escaping failed
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds the security headers to every response, and ``no-store`` to everything but the bundled assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
                if not static and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str, field: str | None = None,
           fields: list[dict[str, str]] | None = None) -> Response:
    if _wants_json(request):
        body: dict[str, Any] = {"detail": message}
        if fields:
            body["errors"] = fields
        # RFC 6750: tells a script which credentials the API takes
        headers = {"WWW-Authenticate": 'Bearer realm="risk"'} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)
    pages: Pages = request.app.state.pages
    if status == 401:
        # back to the page after logging in; a refused form cannot be replayed by a redirect, so home instead
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = target if request.method == "GET" else "/"
        return pages.render(request, "login.html.j2", status=401, next=auth.safe_next(target), name="",
                            error=None)
    return pages.render(request, "error.html.j2", status=status, message=message, fields=fields or [])


def _add_error_handlers(app: FastAPI) -> None:
    """Every handler takes its status from :data:`risk.web.common.HTTP_STATUS` (through ``http_status``)."""

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> Response:
        return _error(request, http_status(exc), exc.message, exc.field)

    @app.exception_handler(UnknownArea)
    async def unknown_area(request: Request, exc: UnknownArea) -> Response:
        return _error(request, http_status(exc), "area: no such area; choose one from the list", "area")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # name each parameter and say what is wrong with it; the rejected value itself is never echoed
        fields = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]) or "request",
                   "where": str(e.get("loc", ("request",))[0]), "message": str(e.get("msg", "invalid"))}
                  for e in exc.errors()]
        summary = "; ".join(f"{f['where']} parameter '{f['field']}': {f['message']}" for f in fields)
        return _error(request, http_status(exc), summary, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {404: "There is no page at this address.", 405: "This address does not accept that method."}
        status = http_status(exc)
        return _error(request, status, messages.get(status, str(exc.detail)))

    @app.exception_handler(RiskError)
    async def risk_error(request: Request, exc: RiskError) -> Response:
        log.warning("request %s failed: %s", request.url.path, exc)
        return _error(request, http_status(exc), str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, http_status(exc), "Something went wrong on the server. It has been logged; please "
                                                 "try again or tell the administrator.")


def create_app(settings: Settings) -> FastAPI:
    """The application for one configuration; the session key comes only from ``web.secret_key_env``."""
    secret = auth.secret_key(settings)
    engine = accounts.open_database(settings.paths.database)
    app = FastAPI(title="risk review pages", docs_url=None, redoc_url=None, openapi_url=None, debug=False)
    app.state.settings = settings
    app.state.data = WebData(settings, engine)
    app.state.pages = Pages(settings)
    app.state.throttle = auth.LoginThrottle(engine, settings.web)
    app.state.trusted_proxies = auth.trusted_networks(settings.web)
    app.state.openapi = None
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                       max_age=settings.web.session_max_age_s, same_site="lax",
                       https_only=settings.web.secure_cookies)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(GZipMiddleware, minimum_size=2000)  # the map's GeoJSON shrinks about fourfold
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    _add_error_handlers(app)
    return app
