"""The JSON API (documented by its OpenAPI schema) and the CSV and GeoJSON exports of flagged tracts."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from risk.core.errors import UnknownTract
from risk.web import accounts
from risk.web.auth import Viewer
from risk.web.common import NotFound, app_state
from risk.web.data import Filters, RunView, WebData
from risk.web.geo import feature_collection
from risk.web.views import GeoidPath, ListFilters

router = APIRouter(prefix="/api", tags=["tracts"])
exports = APIRouter(include_in_schema=False)
docs = APIRouter(include_in_schema=False)


class Review(BaseModel):
    """A planner's decision on a tract."""

    decision: str = Field(description="confirmed, monitoring, false_alarm or escalated")
    note: str
    follow_up: date | None
    percentile: float = Field(description="the tract's percentile rank (0-1) when decided")
    user: str
    decided_at: datetime


class Run(BaseModel):
    """The scoring run the figures come from."""

    id: int
    as_of: date
    model_id: str | None


class TractSummary(BaseModel):
    """A tract's score in the newest run and its review status."""

    geoid: str
    name: str
    probability: float
    percentile: float = Field(description="rank among the run's tracts, 0-1")
    tier: str = Field(description="high, elevated, watch or low")
    probability_change: float | None = Field(description="since the previous run; null on the first")
    percentile_change: float | None = Field(description="rank points since the previous run")
    status: str = Field(description="the newest decision, or 'unreviewed'")
    review: Review | None


class TractList(BaseModel):
    """Tracts of the newest run, filtered and sorted as asked."""

    run: Run
    tracts: list[TractSummary]


class Driver(BaseModel):
    """One feature's SHAP contribution (log-odds) with its plain-language sentence."""

    feature: str
    label: str
    value: float | None
    contribution: float
    sentence: str


class HistoryPoint(BaseModel):
    """The tract's score in one run."""

    run_id: int
    as_of: date
    probability: float
    percentile: float
    tier: str


class TractDetail(TractSummary):
    """One tract: drivers, score history across runs and every decision."""

    run: Run
    drivers: list[Driver]
    history: list[HistoryPoint]
    reviews: list[Review]


def _run(view: RunView) -> dict[str, Any]:
    return {"id": view.run_id, "as_of": view.as_of, "model_id": view.run.get("model_id")}


@router.get("/tracts", response_model=TractList, summary="Scores, tiers and review status")
def api_tracts(request: Request, user: Viewer, filters: ListFilters) -> dict[str, Any]:
    """Tracts of the newest run with their probability, rank, tier, change and newest review.

    Filters and order are those of the flagged-tracts page (by default the flagged tiers, most likely first)."""
    data: WebData = app_state(request).data
    view = data.latest()
    return {"run": _run(view), "tracts": data.rows(view, filters)}


@router.get("/tracts/{geoid}", response_model=TractDetail, summary="Drivers and history of one tract",
            responses={404: {"description": "the tract is not in the newest run"}})
def api_tract(request: Request, user: Viewer, geoid: GeoidPath) -> dict[str, Any]:
    """A tract's score, its SHAP drivers in the newest run, its scores in every run and its decisions."""
    data: WebData = app_state(request).data
    view = data.latest()
    try:
        tract = data.tract(view, geoid)
    except UnknownTract as e:
        raise NotFound(str(e)) from e
    reviews = accounts.review_history(data.engine, geoid)
    return {**tract, "status": reviews[0]["decision"] if reviews else "unreviewed",
            "review": reviews[0] if reviews else None, "run": _run(view), "drivers": data.drivers(view, geoid),
            "history": data.history(geoid), "reviews": reviews}


def openapi_schema(request: Request) -> dict[str, Any]:
    """The API's OpenAPI document (the HTML pages are not part of it)."""
    app = request.app
    if getattr(app.state, "openapi", None) is None:
        app.state.openapi = get_openapi(
            title="risk review API", version="1",
            description="Read-only JSON of the newest scoring run. Every route needs a logged-in session "
                        "(the `risk_session` cookie set by POST /login); answers are 401 without one.",
            routes=router.routes)
    return app.state.openapi


@docs.get("/api/openapi.json")
def api_openapi(request: Request, user: Viewer) -> JSONResponse:
    """The OpenAPI document."""
    return JSONResponse(openapi_schema(request))


@docs.get("/api/docs")
def api_docs(request: Request, user: Viewer) -> Response:
    """The API documented in a page (no external Swagger assets: the users' network may be closed)."""
    schema = openapi_schema(request)
    operations = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "description": p.get("description") or p.get("schema", {}).get("description", ""),
                       "values": p.get("schema", {}).get("enum") or [], "default": p.get("schema", {}).get("default")}
                      for p in op.get("parameters", [])]
            operations.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                               "description": op.get("description", ""), "parameters": params})
    models = {name: {"description": s.get("description", ""), "fields": list(s.get("properties", {}))}
              for name, s in schema.get("components", {}).get("schemas", {}).items()
              if not name.endswith("ValidationError")}
    return app_state(request).pages.render(request, "api_docs.html.j2", operations=operations, models=models)


# ---------------------------------------------------------------- exports

EXPORT_COLUMNS = ["geoid", "name", "region", "probability", "percentile", "tier", "probability_change",
                  "percentile_change",
                  "decision", "note", "follow_up", "decided_by", "decided_at", "run_id", "as_of"]


def _export_rows(request: Request, filters: Filters) -> tuple[list[dict[str, Any]], RunView]:
    data: WebData = app_state(request).data
    view = data.latest()
    out = []
    for r in data.rows(view, filters):
        review = r["review"] or {}
        out.append({"geoid": r["geoid"], "name": r["name"], "region": r["region"],
                    "probability": r["probability"],
                    "percentile": r["percentile"], "tier": r["tier"], "probability_change": r["probability_change"],
                    "percentile_change": r["percentile_change"], "decision": review.get("decision", ""),
                    "note": review.get("note", ""), "follow_up": review.get("follow_up") or "",
                    "decided_by": review.get("user", ""), "decided_at": review.get("decided_at") or "",
                    "run_id": view.run_id, "as_of": view.as_of.isoformat()})
    return out, view


def _cell(value: Any) -> Any:
    """A spreadsheet opens a cell starting with = + - @ as a formula: a planner's note must stay text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@exports.get("/export/flagged.csv")
def export_csv(request: Request, user: Viewer, filters: ListFilters) -> Response:
    """Flagged tracts (same filters as the list) with their newest decision, as CSV."""
    rows, view = _export_rows(request, filters)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return Response(buf.getvalue().encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers=_attachment(f"flagged-tracts-{view.as_of.isoformat()}.csv"))


@exports.get("/export/flagged.geojson")
def export_geojson(request: Request, user: Viewer, filters: ListFilters) -> Response:
    """Flagged tracts (same filters as the list) with their newest decision, as GeoJSON (WGS 84)."""
    rows, view = _export_rows(request, filters)
    body = feature_collection(app_state(request).data.geography(), {r["geoid"]: r for r in rows})
    return Response(body, media_type="application/geo+json",
                    headers=_attachment(f"flagged-tracts-{view.as_of.isoformat()}.geojson"))
