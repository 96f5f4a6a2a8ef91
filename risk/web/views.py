"""The planners' pages: flagged tracts beside the map, one tract, and recording a decision."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from risk.core import clock
from risk.core.errors import AccountError, UnknownTract
from risk.model.track_record import track_record
from risk.web import accounts, pictures
from risk.web.accounts import User
from risk.web.auth import CheckedForm, Planner, Viewer, text_field
from risk.web.common import BadInput, NotFound, app_state, http_status
from risk.web.data import (
    FLAGGED,
    Filters,
    Order,
    RunView,
    Sort,
    Status,
    Tier,
    WebData,
)
from risk.web.geo import feature_collection, tier_colour

router = APIRouter(include_in_schema=False)

GEOID_PATTERN = r"^\d{11}$"
GeoidPath = Annotated[str, Path(pattern=GEOID_PATTERN, description="11-digit census tract GEOID")]
MAX_FOLLOW_UP_YEARS = 5
PNG_HEADERS = {"Cache-Control": "private, max-age=3600"}


def list_filters(request: Request,
                 area: Annotated[str, Query(max_length=100, description="'all', a named area or 'County FIPS'")]
                 = "all",
                 tier: Annotated[Tier, Query(description="'flagged' = high, elevated and watch")] = "flagged",
                 status: Annotated[Status, Query(description="newest review decision, or 'unreviewed'")] = "any",
                 sort: Sort = "probability", order: Order = "desc") -> Filters:
    """The list's filters from the query string; an unknown area is a 400 naming the parameter."""
    if area not in app_state(request).data.areas():
        raise BadInput("area", "no such area; choose one from the list")
    return Filters(area, tier, status, sort, order)


ListFilters = Annotated[Filters, Depends(list_filters)]


def _query(filters: Filters, **change: str) -> str:
    values = {"area": filters.area, "tier": filters.tier, "status": filters.status, "sort": filters.sort,
              "order": filters.order, **change}
    return urlencode(values)


def _sort_links(filters: Filters) -> dict[str, dict[str, str]]:
    links = {}
    for key in ("probability", "change", "tier", "status"):
        current = filters.sort == key
        order = ("asc" if filters.order == "desc" else "desc") if current else "desc"
        links[key] = {"url": "?" + _query(filters, sort=key, order=order),
                      "mark": ("▼" if filters.order == "desc" else "▲") if current else ""}
    return links


@router.get("/")
def flagged(request: Request, user: Viewer, filters: ListFilters) -> Response:
    """Flagged tracts, filtered and sorted, beside the map."""
    state = app_state(request)
    data: WebData = state.data
    view = data.latest()
    rows = data.rows(view, filters)
    counts = view.table["tier"].value_counts().to_dict()
    geography = data.geography()
    return state.pages.render(
        request, "flagged.html.j2", run=view.run, rows=rows, filters=filters, areas=data.areas(),
        tiers=["flagged", *FLAGGED, "low", "all"], statuses=["any", "unreviewed", *accounts.DECISIONS],
        counts={t: int(counts.get(t, 0)) for t in ("high", "elevated", "watch", "low")},
        sort_links=_sort_links(filters), query=_query(filters), listed=[r["geoid"] for r in rows],
        bounds=list(geography.bounds) if geography.bounds else None,
        unmapped=len(geography.names) - len(geography.shapes),
        several_regions=len(set(geography.regions.values())) > 1)


@router.get("/map/tracts.geojson")
def map_tracts(request: Request, user: Viewer) -> Response:
    """Every tract's simplified shape with its tier, probability and review status (cached per run)."""
    data: WebData = app_state(request).data
    view = data.latest()
    version = accounts.reviews_version(data.engine)

    def build() -> bytes:
        decided = accounts.latest_reviews(data.engine)
        props = {}
        for geoid, r in zip(view.table.index, view.table.to_dict("records"), strict=True):
            review = decided.get(geoid)
            props[geoid] = {"geoid": geoid, "name": r["name"], "tier": r["tier"], "colour": tier_colour(r["tier"]),
                            "probability": round(float(r["probability"]), 4),
                            "status": accounts.DECISIONS.get(review["decision"], "") if review else "unreviewed"}
        return feature_collection(data.geography(), props)

    body = data.memo(("map", view.run_id, version), build, keep=512)
    return Response(body, media_type="application/geo+json")


def history_chart(history: list[dict[str, Any]], width: int = 560, height: int = 200) -> dict[str, Any]:
    """Coordinates of the risk history chart (drawn as SVG by the template: numbers only, nothing to escape)."""
    left, right, top, bottom = 48, 16, 14, 34
    if not history:
        return {"width": width, "height": height, "points": [], "line": "", "ticks": [], "labels": []}
    peak = max(h["probability"] for h in history)
    ymax = max(0.05, peak * 1.25)
    n = len(history)

    def x(i: int) -> float:
        return left + (width - left - right) * (0.5 if n == 1 else i / (n - 1))

    def y(p: float) -> float:
        return top + (height - top - bottom) * (1 - p / ymax)

    points = [{"x": round(x(i), 1), "y": round(y(h["probability"]), 1), "colour": tier_colour(h["tier"]),
               "title": f"{h['as_of']}: {100 * h['probability']:.1f}% ({h['tier']})"} for i, h in enumerate(history)]
    ticks = [{"y": round(y(ymax * k / 4), 1), "label": f"{100 * ymax * k / 4:.0f}%"} for k in range(5)]
    shown = sorted({0, n - 1} | set(range(0, n, max(1, n // 6))))
    # the end labels are anchored inwards so the last date is not cut off at the edge
    labels = [{"x": round(x(i), 1), "text": history[i]["as_of"].isoformat(),
               "anchor": "middle" if n == 1 or 0 < i < n - 1 else ("start" if i == 0 else "end")} for i in shown]
    return {"width": width, "height": height, "points": points, "ticks": ticks, "labels": labels,
            "line": " ".join(f"{p['x']},{p['y']}" for p in points), "left": left, "right": width - right,
            "bottom": height - bottom}


def _tract_page(request: Request, view: RunView, geoid: str, user: User, status: int = 200,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Response:
    state = app_state(request)
    data: WebData = state.data
    try:
        tract = data.tract(view, geoid)
    except UnknownTract as e:
        raise NotFound(str(e)) from e
    history = data.history(geoid)
    today = clock.today()
    return state.pages.render(
        request, "tract.html.j2", status=status, run=view.run, tract=tract, history=history,
        chart=history_chart(history), drivers=data.drivers(view, geoid), indicators=data.indicators(view, geoid),
        area=data.comparison_area(geoid),
        track_record=track_record(view.record.metadata) if view.record is not None else "",
        alerts=data.past_alerts(geoid), reviews=accounts.review_history(data.engine, geoid),
        can_decide=user.can("planner"), errors=errors or {}, values=values or {},
        today=today.isoformat(), latest=(today + timedelta(days=366 * MAX_FOLLOW_UP_YEARS)).isoformat())


@router.get("/tracts/{geoid}")
def tract_page(request: Request, user: Viewer, geoid: GeoidPath) -> Response:
    """One tract: history, SHAP waterfall, drivers, indicators, past alerts, reviews and the review form."""
    return _tract_page(request, app_state(request).data.latest(), geoid, user)


@router.get("/tracts/{geoid}/waterfall.png")
def tract_waterfall(request: Request, user: Viewer, geoid: GeoidPath) -> Response:
    """The tract's SHAP waterfall in the newest run (drawn once, then served from memory)."""
    data: WebData = app_state(request).data
    view = data.latest()
    if geoid not in view.table.index:
        raise NotFound(f"tract {geoid} is not in run {view.run_id}")
    return Response(pictures.tract_waterfall(data, view, geoid), media_type="image/png", headers=PNG_HEADERS)


def _follow_up(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = date.fromisoformat(text)
    except ValueError as e:
        raise BadInput("follow_up", "must be a date written YYYY-MM-DD") from e
    today = clock.today()
    if not today <= value <= today + timedelta(days=366 * MAX_FOLLOW_UP_YEARS):
        raise BadInput("follow_up", f"must be between today and {MAX_FOLLOW_UP_YEARS} years from now")
    return value


@router.post("/tracts/{geoid}/reviews")
def record_review(request: Request, user: Planner, form: CheckedForm, geoid: GeoidPath) -> Response:
    """Store a decision, a note and a follow-up date for the tract (planners and admins)."""
    data: WebData = app_state(request).data
    view = data.latest()
    if geoid not in view.table.index:
        raise NotFound(f"tract {geoid} is not in run {view.run_id}")
    # read generously: the checks below give the precise message (a note's limit and its length)
    values = {k: text_field(form, k, 100 * accounts.MAX_NOTE) for k in ("decision", "note", "follow_up")}
    try:
        decision = accounts.check_decision(values["decision"])
        note = accounts.check_note(values["note"])
        follow_up = _follow_up(values["follow_up"])
    except AccountError as e:
        return _tract_page(request, view, geoid, user, status=http_status(e), errors={e.field: e.message},
                           values=values)
    except BadInput as e:
        return _tract_page(request, view, geoid, user, status=http_status(e), errors={e.field or "form": e.detail},
                           values=values)
    accounts.record_decision(data.engine, geoid, decision, note, follow_up,
                             float(view.table.loc[geoid, "percentile"]), user.name)
    request.session["flash"] = f"Decision recorded: {accounts.DECISIONS[decision]}."
    return RedirectResponse(f"/tracts/{geoid}#reviews", status_code=303)
