"""Composing this week's messages: one digest per recipient, plus immediate high-tier messages."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import date
from email.errors import MessageError
from pathlib import Path

import geopandas as gpd
import pandas as pd

from risk.alerts.messages import (
    Body,
    Outgoing,
    Pictures,
    area_map,
    frame_sentences,
    personal_message,
    render_body,
    tract_names,
    tract_rows,
)
from risk.alerts.recipients import load_recipients, named_areas, recipient_tracts
from risk.alerts.rules import Alert, decide, idempotency_key, week_of
from risk.core.settings import Settings
from risk.model.gbm import TrainedModel
from risk.scoring.explain import compact_waterfall_png, contributions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutputs:
    """What the scoring stages produced, as the alert stage needs it."""

    as_of: date
    scores: pd.DataFrame
    previous: pd.DataFrame
    decisions: pd.DataFrame
    driver_rows: pd.DataFrame
    features: pd.DataFrame
    model: TrainedModel
    notes: list[str]
    track_record: str = ""
    """The model's backtest in one sentence, carried by every e-mail."""


def _waterfalls(model: TrainedModel, features: pd.DataFrame, geoids: set[str], pictures: Pictures) -> None:
    todo = sorted(g for g in geoids if g not in pictures.waterfalls)
    if not todo:
        return
    expl = contributions(model, features.loc[todo])
    # the e-mail shows each tract's calibrated probability: the picture says how its log-odds become that
    shown = dict(zip(todo, model.predict(features.loc[todo]), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        for g in todo:
            path = compact_waterfall_png(expl, g, Path(tmp) / f"{g}.png", probability=float(shown[g]))
            pictures.waterfalls[g] = path.read_bytes()


def _regions_of(tracts: gpd.GeoDataFrame, follows: set[str]) -> list[str]:
    """The regions a recipient's tracts lie in (the project's one region when it has one)."""
    if "region" not in tracts.columns:
        return []
    return sorted(set(tracts.loc[tracts.index.isin(list(follows)), "region"].astype(str)))


def _notes_for(notes: list[str], regions: list[str], settings: Settings) -> list[str]:
    """The run's data notes a recipient needs: those of no region in particular and those of their regions."""
    others = [r.region.name for r in settings.regional() if r.region.name not in regions] if settings.multi_region \
        else []
    return [n for n in notes if not any(n.startswith(f"{o}: ") for o in others)]


UNRANKED_SHOWN = 5
"""Tracts named in the note on tracts that are not ranked; the rest are counted."""


def _unranked_notes(scores: pd.DataFrame, follows: set[str], names: dict[str, str]) -> list[str]:
    """One note naming the recipient's tracts that are not ranked (too small to score, mostly group quarters):
    they are listed apart, never among the flagged tracts."""
    if "unranked" not in scores:
        return []
    reasons = scores["unranked"].dropna()
    reasons = reasons[reasons.index.isin(list(follows))]
    if reasons.empty:
        return []
    shown = [f"{names.get(g, g)} ({why})" for g, why in reasons.sort_index().head(UNRANKED_SHOWN).items()]
    more = f"; and {len(reasons) - UNRANKED_SHOWN} more" if len(reasons) > UNRANKED_SHOWN else ""
    return [f"{len(reasons)} tract(s) are not ranked and never alert, because their scores would rest on a "
            f"handful of households: {'; '.join(shown)}{more}."]


def compose(settings: Settings, tracts: gpd.GeoDataFrame, run: RunOutputs, pictures: Pictures | None = None,
            problems: list[str] | None = None) -> tuple[list[Alert], list[Outgoing]]:
    """This week's alerts and every message they lead to (not yet queued); a recipient whose message cannot be
    written is skipped, logged and, when ``problems`` is given, named there."""
    cfg = settings.alerts
    pictures = pictures or Pictures()
    alerts = decide(run.scores, run.previous, run.decisions, cfg)
    recipients = load_recipients(cfg, problems)
    areas = named_areas(cfg, tracts)
    names = tract_names(tracts, areas)
    drivers = run.driver_rows
    # sentences of the alerted tracts only: every tract's would take tens of seconds at national scale
    sentences = frame_sentences(drivers[drivers["geoid"].isin({a.geoid for a in alerts})] if len(drivers) else drivers)
    week = week_of(run.as_of)
    out: list[Outgoing] = []
    geoids = pd.Index(list(tracts.index))  # plain strings: iterating Arrow-backed values is slow
    follows_of: dict[tuple[str, ...], set[str]] = {}  # a thousand recipients share a few dozen areas
    bodies: dict[tuple[tuple[str, ...], str], Body] = {}

    def body(follows: set[str], chosen: list[Alert], areas_: tuple[str, ...], kind: str) -> Body:
        """The message everyone following ``areas_`` gets, its pictures drawn if they are not yet."""
        top = {a.geoid for a in chosen[:cfg.top_waterfalls]}
        _waterfalls(run.model, run.features, top, pictures)
        area_key = frozenset(follows)
        if chosen and area_key not in pictures.maps:
            drawn = area_map(tracts, set(follows), {a.geoid: a.tier for a in alerts})
            if drawn is not None:
                pictures.maps[area_key] = drawn
        rows = tract_rows(chosen, names, sentences, settings.delivery.base_url, {g: f"drivers-{g}" for g in top})
        mine = _regions_of(tracts, follows)
        notes = _notes_for(run.notes, mine, settings) + _unranked_notes(run.scores, follows, names)
        return render_body(settings, kind, run.as_of, rows, areas_, pictures.maps.get(area_key) if chosen else None,
                           pictures.waterfalls, notes, region=" and ".join(mine), track_record=run.track_record)

    for person in recipients:
        if person.areas not in follows_of:
            follows_of[person.areas] = recipient_tracts(person, geoids, areas)
        follows = follows_of[person.areas]
        mine = [a for a in alerts if a.geoid in follows]
        kinds = []
        if mine or person.empty_digest:
            kinds.append(("digest", mine))
        urgent = [a for a in mine if "new_high" in a.reasons]
        if person.immediate and urgent:
            kinds.append(("immediate", urgent))
        for kind, chosen in kinds:
            # the same areas give the same tracts, text and pictures: render once, then add each name
            if (person.areas, kind) not in bodies:
                bodies[(person.areas, kind)] = body(follows, chosen, person.areas, kind)
            try:
                msg = personal_message(settings, bodies[(person.areas, kind)], person)
                key = idempotency_key(person.email, kind, week)
            except (ValueError, TypeError, UnicodeError, MessageError) as e:
                # one address the mail library cannot write must not cost everyone else this week's e-mail
                problem = f"no {kind} for recipient {person.email!r} ({person.name}): {e}"
                log.warning(problem)
                if problems is not None:
                    problems.append(problem)
                continue
            out.append(Outgoing(key, week, kind, person.email, msg))
    return alerts, out
