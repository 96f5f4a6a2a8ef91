"""Alert rules and subscriptions: which tracts alert this week, and who hears about which.

A tract alerts when it newly enters the high tier, when its percentile rank
rises by ``rise_points`` since the last run, or when its probability crosses
``probability``. After a planner's decision in ``suppress_decisions`` (a
false alarm, a case already escalated) it stays quiet unless its percentile
rank rises ``suppress_margin_points`` above the rank it had when decided.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import date

import geopandas as gpd
import numpy as np
import pandas as pd
from pydantic import ValidationError

from risk.core.errors import ConfigError, ConfigIssue, Problem
from risk.core.settings import AlertSettings, Recipient

REASONS = {
    "new_high": "newly in the high tier",
    "rising": "rising fast",
    "crossed": "crossed the alert probability",
}


@dataclass(frozen=True)
class Alert:
    """One tract alerting this week, with the reasons."""

    geoid: str
    reasons: tuple[str, ...]
    probability: float
    percentile: float
    tier: str
    probability_change: float | None
    percentile_change: float | None


def week_of(as_of: date) -> str:
    """ISO week of a run, e.g. ``2019-W09``: the unit of exactly-once delivery."""
    year, week, _ = as_of.isocalendar()
    return f"{year}-W{week:02d}"


def idempotency_key(recipient: str, item: str, week: str) -> str:
    """Stable key of one item (a tract, or a kind of message) for one recipient in one run week."""
    return hashlib.sha256(f"{recipient.lower()}|{item}|{week}".encode()).hexdigest()[:32]


def decide(scores: pd.DataFrame, previous: pd.DataFrame, decisions: pd.DataFrame, cfg: AlertSettings) -> list[Alert]:
    """Alerts of this run. ``scores``/``previous`` are indexed by GEOID; ``decisions`` holds the latest
    review per tract (index GEOID, columns ``decision`` and ``percentile``)."""
    prev_tier = previous["tier"].reindex(scores.index) if "tier" in previous else pd.Series(index=scores.index)
    prev_p = previous["probability"].reindex(scores.index) if "probability" in previous else pd.Series(
        index=scores.index, dtype="float64")
    if scores.empty:
        return []
    change = scores["percentile_change"] if "percentile_change" in scores else pd.Series(np.nan, index=scores.index)
    # each reason for every tract at once: a row-by-row loop over 85,000 tracts takes tens of seconds
    reasons = pd.DataFrame({
        "new_high": (scores["tier"] == "high").to_numpy() & (prev_tier != "high").to_numpy(),
        "rising": (change.notna() & (change >= cfg.rise_points)).to_numpy(),
        "crossed": (scores["probability"] >= cfg.probability).to_numpy() & ~(prev_p >= cfg.probability).to_numpy(),
    }, index=scores.index)
    alerts = []
    for geoid, flags in reasons[reasons.any(axis=1)].iterrows():
        row = scores.loc[geoid]
        if _suppressed(geoid, row["percentile"], decisions, cfg):
            continue
        alerts.append(Alert(str(geoid), tuple(r for r in reasons.columns if flags[r]), float(row["probability"]),
                            float(row["percentile"]), str(row["tier"]), _num(row.get("probability_change")),
                            _num(change[geoid])))
    return sorted(alerts, key=lambda a: -a.probability)


def _num(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def _suppressed(geoid: str, percentile: float, decisions: pd.DataFrame, cfg: AlertSettings) -> bool:
    if decisions.empty or geoid not in decisions.index:
        return False
    last = decisions.loc[geoid]
    if last["decision"] not in cfg.suppress_decisions:
        return False
    return 100 * (percentile - float(last["percentile"])) < cfg.suppress_margin_points


def load_recipients(cfg: AlertSettings, skipped: list[str] | None = None) -> list[Recipient]:
    """Recipients from the config and the optional CSV; a bad CSV row is a config error naming its line, or,
    with ``skipped`` (the weekly run: one bad row must not cost the others their e-mail), left out and named
    there."""
    people = list(cfg.recipients)
    if cfg.recipients_csv is None:
        return people
    issues = []
    with open(cfg.recipients_csv, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            try:
                people.append(Recipient(
                    name=(row.get("name") or "").strip(), email=(row.get("email") or "").strip(),
                    areas=tuple(a.strip() for a in (row.get("areas") or "all").split(";") if a.strip()),
                    immediate=(row.get("immediate") or "").strip().lower() in {"1", "true", "yes"}))
            except ValidationError as e:
                msg = "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg'].removeprefix('Value error, ')}"
                                for x in e.errors()) or "invalid row"
                issues.append(ConfigIssue(f"alerts.recipients_csv line {i}", msg, i))
    if issues and skipped is None:
        raise ConfigError(str(cfg.recipients_csv), issues)
    for issue in issues:
        skipped.append(f"recipient left out: {cfg.recipients_csv}, line {issue.line}: {issue.message}")  # type: ignore[union-attr]
    return people


def named_areas(cfg: AlertSettings, tracts: gpd.GeoDataFrame) -> dict[str, set[str]]:
    """Tracts of each named area: those whose interior point lies inside it."""
    if cfg.areas_file is None:
        return {}
    areas = gpd.read_file(cfg.areas_file).to_crs(tracts.crs)
    if cfg.areas_name_field not in areas.columns:
        raise ConfigError(str(cfg.areas_file), [ConfigIssue(
            "alerts.areas_name_field", f"no property '{cfg.areas_name_field}' in the areas file")])
    points = gpd.GeoDataFrame(geometry=tracts.geometry.representative_point(), index=tracts.index, crs=tracts.crs)
    joined = gpd.sjoin(points.reset_index(names="geoid"), areas[[cfg.areas_name_field, "geometry"]],
                       predicate="within")
    return {str(n): set(g["geoid"]) for n, g in joined.groupby(cfg.areas_name_field)}


def recipient_tracts(recipient: Recipient, tracts: pd.Index, areas: dict[str, set[str]]) -> set[str]:
    """The tracts a recipient follows."""
    out: set[str] = set()
    for area in recipient.areas:
        if area == "all":
            out |= set(tracts)
        elif len(area) == 11 and area.isdigit():
            out |= {area} & set(tracts)
        elif len(area) == 5 and area.isdigit():
            out |= {g for g in tracts if g.startswith(area)}
        else:
            out |= areas.get(area, set())
    return out


def check_areas(recipients: list[Recipient], tracts: pd.Index, areas: dict[str, set[str]]) -> list[Problem]:
    """Areas that name nothing: a typo would silently mute a recipient."""
    problems = []
    for r in recipients:
        for area in r.areas:
            if area != "all" and not recipient_tracts(Recipient(name=r.name, email=r.email, areas=(area,)),
                                                      tracts, areas):
                problems.append(Problem("config.yaml", f"recipient {r.email}: area '{area}' matches no tract "
                                        "(a GEOID, county FIPS or a name in alerts.areas_file)", column="areas"))
    return problems

