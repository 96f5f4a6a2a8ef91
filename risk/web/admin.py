"""The audit log (planners and admins) and user management (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from risk.core.errors import AccountError
from risk.web import accounts
from risk.web.accounts import User
from risk.web.auth import Admin, CheckedForm, Planner, text_field
from risk.web.common import NotFound, app_state, http_status

router = APIRouter(include_in_schema=False)
NamePath = Annotated[str, Path(pattern=accounts.NAME_PATTERN.pattern, max_length=100)]


@router.get("/audit")
def audit_log(request: Request, user: Planner,
              target: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._@-]{1,100}$")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Response:
    """Every recorded change, newest first: who, when, what, before and after."""
    state = app_state(request)
    entries = accounts.audit_entries(state.data.engine, target=target, limit=limit)
    return state.pages.render(request, "audit.html.j2", entries=entries, target=target)


def _users_page(request: Request, status: int = 200, error: str | None = None,
                values: dict[str, str] | None = None) -> Response:
    state = app_state(request)
    return state.pages.render(request, "users.html.j2", status=status, users=accounts.list_users(state.data.engine),
                              error=error, values=values or {})


@router.get("/admin/users")
def users_page(request: Request, user: Admin) -> Response:
    """Users, their roles, and a form to add one."""
    return _users_page(request)


@router.post("/admin/users")
def add_user(request: Request, user: Admin, form: CheckedForm) -> Response:
    """Add a user (the password is hashed with argon2 and never stored)."""
    name = text_field(form, "name", 100).strip()
    role = text_field(form, "role", 20)
    password = text_field(form, "password", accounts.MAX_PASSWORD)
    try:
        accounts.add_user(app_state(request).data.engine, name, role, password, actor=user.name)
    except AccountError as e:
        return _users_page(request, http_status(e), f"{e.field}: {e.message}", {"name": name, "role": role})
    request.session["flash"] = f"User {name} added as {role}."
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{name}")
def change_access(request: Request, user: Admin, form: CheckedForm, name: NamePath) -> Response:
    """Change a user's role, or lock them out; admins cannot lock themselves out."""
    role = text_field(form, "role", 20)
    active = text_field(form, "active", 10) == "yes"
    if name == user.name and (role != "admin" or not active):
        return _users_page(request, 400, "role: you cannot remove your own admin role or lock yourself out")
    try:
        changed: User = accounts.set_access(app_state(request).data.engine, name, role, active, actor=user.name)
    except AccountError as e:
        if e.field == "name":
            raise NotFound(e.message) from e
        return _users_page(request, http_status(e), f"{e.field}: {e.message}")
    request.session["flash"] = f"User {changed.name}: {changed.role}, {'active' if changed.active else 'locked'}."
    return RedirectResponse("/admin/users", status_code=303)
