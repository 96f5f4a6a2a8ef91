"""What the review pages show, read from the job's database and files and cached per run.

The newest finished run is looked up on every request (one indexed query), so
a run the weekly job stores while the server is up shows on the next page
load; everything derived from a run (its scores table, drivers, features,
model, past alerts) is computed once per run id and kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from risk.alerts.rules import REASONS, decide
from risk.core.errors import RiskError, UnknownArea, UnknownTract
from risk.core.settings import Settings
from risk.core.store import alerted, run_scores, runs, scores
from risk.features.dictionary import BASE_FEATURES, BY_NAME, Feature
from risk.model.gbm import TrainedModel
from risk.model.registry import ModelRecord
from risk.scoring.explain import comparison_area
from risk.scoring.scores import TIERS
from risk.service.artifacts import StoredRun, read_newest_run
from risk.web import accounts
from risk.web.geo import Geography, load_geography

T = TypeVar("T")
Tier = Literal["flagged", "high", "elevated", "watch", "low", "all"]
Status = Literal["any", "unreviewed", "confirmed", "monitoring", "false_alarm", "escalated"]
Sort = Literal["probability", "change", "tier", "status"]
Order = Literal["asc", "desc"]
FLAGGED = ("high", "elevated", "watch")
"""Tiers shown as flagged: every tier above low."""


@dataclass(frozen=True)
class Filters:
    """The flagged-tracts list's filters and order, already validated."""

    area: str = "all"
    tier: Tier = "flagged"
    status: Status = "any"
    sort: Sort = "probability"
    order: Order = "desc"


@dataclass
class RunView:
    """One finished run as the pages need it."""

    stored: StoredRun = field(repr=False)
    """The run as read back (:mod:`risk.service.artifacts`): its row, features file and model record."""
    table: pd.DataFrame
    """Its scores, each tract's name added."""
    drivers: dict[str, list[dict[str, Any]]]
    """Its stored drivers by GEOID, strongest first."""
    _model: TrainedModel | None = field(default=None, repr=False)

    @property
    def run(self) -> dict[str, Any]:
        """The run's row in the run history."""
        return self.stored.row

    @property
    def features(self) -> pd.DataFrame | None:
        """The run's feature table, None if its file is gone."""
        return self.stored.features

    @property
    def record(self) -> ModelRecord | None:
        """The run's registered model, None if it is not in the registry (any more)."""
        return self.stored.record

    @property
    def run_id(self) -> int:
        """The run's id."""
        return self.stored.run_id

    @property
    def as_of(self) -> date:
        """The run's as-of date."""
        return self.stored.as_of

    def model(self) -> TrainedModel:
        """The run's model, loaded on first use."""
        if self._model is None:
            if self.record is None:
                raise RiskError(f"the model of run {self.run_id} ({self.run['model_id']}) is not in the registry")
            self._model = self.record.load()
        return self._model

    def explainable(self) -> pd.DataFrame:
        """The run's feature table; an error naming the file if it is gone."""
        if self.features is None:
            raise RiskError(f"the features of run {self.run_id} are missing: run `risk run` again")
        return self.features


def _text(value: object) -> str | None:
    """A stored text, or None where the database holds NULL (a run stored before the column existed too)."""
    return None if value is None or pd.isna(value) else str(value)  # type: ignore[arg-type]


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


class WebData:
    """Cached reads for one database and configuration; safe to share between request threads."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.RLock()
        self._geography: Geography | None = None
        self._view: RunView | None = None
        self._alerts: dict[int, dict[str, tuple[str, ...]]] = {}
        self._memo: dict[Any, Any] = {}

    # ------------------------------------------------------------ caches

    def geography(self) -> Geography:
        """Tract shapes, names and areas (read once per process)."""
        with self._lock:
            if self._geography is None:
                self._geography = load_geography(self.settings)
            return self._geography

    def memo(self, key: Any, build: Callable[[], T], keep: int = 512) -> T:
        """``build()`` once per key; the oldest entries are dropped past ``keep``."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = build()  # outside the lock: a slow picture must not hold up every other page
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > keep:
                self._memo.pop(next(iter(self._memo)))
        return value

    def latest(self) -> RunView:
        """The newest finished run; :class:`NoRunYet` if there is none."""
        with self._lock:  # held while a new run is read, so concurrent requests read its files once
            view = self._view
            stored = read_newest_run(self.settings, self.engine, known=view.stored if view else None)
            if view is None or view.stored is not stored:
                view = self._view = self._view_of(stored)  # older runs are not shown: keep one
            return view

    def _view_of(self, stored: StoredRun) -> RunView:
        geography = self.geography()
        names, regions = geography.names, geography.regions
        table = stored.scores.assign(name=[names.get(g, f"Census tract {g}") for g in stored.scores.index],
                                     region=[regions.get(g, "") for g in stored.scores.index])
        driver_map: dict[str, list[dict[str, Any]]] = {}
        if not stored.drivers.empty:
            for rec in stored.drivers.sort_values(["geoid", "rank"]).to_dict("records"):
                driver_map.setdefault(rec["geoid"], []).append(rec)
        return RunView(stored, table, driver_map)

    # ------------------------------------------------------------ the flagged list

    def areas(self) -> list[str]:
        """Area filter values: 'all', the named areas and the region's counties."""
        return ["all", *self.geography().areas]

    def rows(self, view: RunView, filters: Filters) -> list[dict[str, Any]]:
        """Tracts of the run with their newest review, filtered and sorted."""
        table = view.table
        if filters.tier == "flagged":
            table = table[table["tier"].isin(FLAGGED)]
        elif filters.tier != "all":
            table = table[table["tier"] == filters.tier]
        if filters.area != "all":
            members = self.geography().areas.get(filters.area)
            if members is None:
                raise UnknownArea(filters.area)
            table = table[table.index.isin(list(members))]
        decided = accounts.latest_reviews(self.engine)
        out = []
        for geoid, r in zip(table.index, table.to_dict("records"), strict=True):
            review = decided.get(geoid)
            status = review["decision"] if review else "unreviewed"
            if filters.status != "any" and status != filters.status:
                continue
            out.append({"geoid": geoid, "name": r["name"], "region": r["region"],
                        "probability": float(r["probability"]),
                        "percentile": float(r["percentile"]), "tier": r["tier"],
                        "probability_change": _number(r["probability_change"]),
                        "percentile_change": _number(r["percentile_change"]), "status": status,
                        "review": review, "unranked": _text(r.get("unranked"))})
        key = {"probability": lambda x: x["probability"],
               "change": lambda x: -np.inf if x["percentile_change"] is None else x["percentile_change"],
               "tier": lambda x: (-TIERS.index(x["tier"]), x["probability"]),
               "status": lambda x: (x["status"], x["probability"])}[filters.sort]
        out.sort(key=lambda x: x["geoid"])  # ties (equal probabilities are common) always in GEOID order
        out.sort(key=key, reverse=filters.order == "desc")  # a stable sort, reversed or not
        return out

    # ------------------------------------------------------------ one tract

    def tract(self, view: RunView, geoid: str) -> dict[str, Any]:
        """The tract's row in the run; :class:`UnknownTract` if it has none."""
        if geoid not in view.table.index:
            raise UnknownTract(f"tract {geoid} is not in run {view.run_id} (as of {view.as_of})")
        r = view.table.loc[geoid]
        return {"geoid": geoid, "name": str(r["name"]), "region": str(r["region"]),
                "probability": float(r["probability"]),
                "percentile": float(r["percentile"]), "tier": str(r["tier"]),
                "probability_change": _number(r["probability_change"]),
                "percentile_change": _number(r["percentile_change"]), "unranked": _text(r.get("unranked"))}

    def history(self, geoid: str) -> list[dict[str, Any]]:
        """The tract's score in every finished run, oldest first."""
        query = (select(runs.c.id, runs.c.as_of, scores.c.probability, scores.c.percentile, scores.c.tier)
                 .join(runs, runs.c.id == scores.c.run_id)
                 .where(scores.c.geoid == geoid, alerted()).order_by(runs.c.id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{"run_id": r["id"], "as_of": r["as_of"], "probability": float(r["probability"]),
                 "percentile": float(r["percentile"]), "tier": r["tier"]} for r in rows]

    def past_alerts(self, geoid: str) -> list[dict[str, Any]]:
        """Runs in which the tract alerted, newest first, reconstructed with the alert rules.

        Each run is judged against the run before it and the decisions made by the time it finished, as the
        job judged it; a run's answer is computed once and kept."""
        with self.engine.connect() as conn:
            finished = conn.execute(select(runs.c.id, runs.c.as_of, runs.c.finished_at)
                                    .where(alerted()).order_by(runs.c.id)).mappings().all()
        reviews: list[dict[str, Any]] | None = None
        out = []
        for i, run in enumerate(finished):
            with self._lock:
                hits = self._alerts.get(int(run["id"]))
            if hits is None:
                # decisions are stamped when made, so later ones never change a finished run's answer
                reviews = accounts.all_reviews(self.engine) if reviews is None else reviews
                current = run_scores(self.engine, run["id"])
                previous = (run_scores(self.engine, finished[i - 1]["id"]) if i else
                            pd.DataFrame(columns=["probability", "percentile"]))
                decided = _decisions_by(reviews, run["finished_at"])
                hits = {a.geoid: a.reasons for a in decide(current, previous, decided, self.settings.alerts)}
                with self._lock:
                    self._alerts[int(run["id"])] = hits
            if geoid in hits:
                out.append({"run_id": run["id"], "as_of": run["as_of"],
                            "reasons": [REASONS[r] for r in hits[geoid]]})
        return out[::-1]

    def indicators(self, view: RunView, geoid: str) -> list[dict[str, Any]]:
        """The tract's own (not neighbors') indicators against its region's median, by family."""
        features = view.features
        if features is None or geoid not in features.index:
            return []
        regions = self.geography().regions
        region = regions.get(geoid, "")

        def region_medians() -> pd.Series:
            members = [g for g, r in regions.items() if r == region]
            return features.loc[features.index.intersection(members)].median(numeric_only=True)

        medians = self.memo(("medians", view.run_id, region), region_medians)
        row = features.loc[geoid]
        out = []
        for f in BASE_FEATURES:
            # a difference from the regional median is already a comparison: its county median is 0 by design
            if f.family == "coverage" or f.name.endswith("_vs_region") or f.name not in features.columns:
                continue
            value, median = _number(row[f.name]), _number(medians.get(f.name))
            if value is None:
                continue
            relation = "" if median is None else ("above" if value > median else "below" if value < median
                                                   else "at")
            out.append({"family": f.family, "label": f.label, "description": f.description,
                        "value": _shown(f, value), "median": "" if median is None else _shown(f, median),
                        "relation": relation})
        return out

    def comparison_area(self, geoid: str) -> str:
        """What the tract's indicators are compared with, in words: 'county' or 'region'."""
        for regional in self.settings.regional():
            if geoid[:5] in regional.region.county_fips:
                return comparison_area(regional.region.county_fips)
        return "county"

    def drivers(self, view: RunView, geoid: str) -> list[dict[str, Any]]:
        """The stored drivers of the tract in this run, strongest first."""
        return [{"feature": d["feature"], "label": BY_NAME[d["feature"]].label if d["feature"] in BY_NAME
                 else d["feature"], "value": _number(d["value"]), "contribution": float(d["contribution"]),
                 "sentence": d["sentence"]} for d in view.drivers.get(geoid, [])]


def _shown(feature: Feature, value: float) -> str:
    """The value in its unit, as the driver sentences write it (a ratio reads 'times')."""
    return f"{value:,.2f} times" if feature.unit == "ratio" else feature.format(value)


def _decisions_by(reviews: list[dict[str, Any]], when: datetime | None) -> pd.DataFrame:
    """The newest decision per tract among those made by ``when`` (the shape the alert rules read)."""
    when = accounts.as_utc(when)
    latest: dict[str, dict[str, Any]] = {}
    for r in reviews:
        if when is None or r["decided_at"] <= when:
            latest[r["geoid"]] = r
    if not latest:
        return pd.DataFrame(columns=["decision", "percentile"])
    return pd.DataFrame.from_dict(latest, orient="index")[["decision", "percentile"]]
