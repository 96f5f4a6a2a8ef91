"""The model page for policy staff: what drives the scores overall, how well the model did, and on what data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from risk.web import modelinfo, pictures
from risk.web.auth import Viewer
from risk.web.common import NotFound, app_state
from risk.web.data import WebData
from risk.web.views import PNG_HEADERS

router = APIRouter(include_in_schema=False)


@router.get("/model")
def model_page(request: Request, user: Viewer) -> Response:
    """Global importance, beeswarm, backtest against the baselines, dictionary, data sources, limitations."""
    state = app_state(request)
    data: WebData = state.data
    view = data.latest()
    settings = state.settings
    summary = modelinfo.backtest_summary(view.record, settings)
    loaded = data.geography().sources
    sources = data.memo(("sources", view.run_id), lambda: modelinfo.data_sources(settings, loaded, view.as_of))
    limitations = data.memo(("limitations", view.run_id), lambda: modelinfo.limitations(loaded, view.as_of))
    return state.pages.render(
        request, "model.html.j2", run=view.run, record=view.record, backtest=modelinfo.backtest_table(view.record),
        summary=summary, has_pr_curves=modelinfo.pr_curves_path(settings, summary["outcome"]) is not None,
        limitations=limitations, sources=sources, dictionary=modelinfo.dictionary_rows(),
        regions=modelinfo.region_rows(view.record), transfer=modelinfo.transfer_figures(view.record))


@router.get("/model/importance.png")
def importance_png(request: Request, user: Viewer) -> Response:
    """Mean |SHAP| per feature over every tract of the newest run."""
    data: WebData = app_state(request).data
    return Response(pictures.importance(data, data.latest()), media_type="image/png", headers=PNG_HEADERS)


@router.get("/model/beeswarm.png")
def beeswarm_png(request: Request, user: Viewer) -> Response:
    """Every tract's contributions of the most important features."""
    data: WebData = app_state(request).data
    return Response(pictures.beeswarm(data, data.latest()), media_type="image/png", headers=PNG_HEADERS)


@router.get("/model/pr_curves.png")
def pr_curves_png(request: Request, user: Viewer) -> Response:
    """The backtest report's precision-recall curves of every model."""
    state = app_state(request)
    view = state.data.latest()
    outcome = (view.record.metadata.get("outcome") if view.record else None) or state.settings.model.outcome
    path = modelinfo.pr_curves_path(state.settings, outcome)
    if path is None:
        raise NotFound("no backtest report for this outcome yet: run `risk backtest`")
    return Response(path.read_bytes(), media_type="image/png", headers=PNG_HEADERS)
