"""The UDP typology as a point-in-time ranking baseline.

At an as-of date the typology can only use the vintages released by then:
before ACS 2014-2018 (December 2019) that is Census 2000 as the current
vintage against 1990, with no recent rent change. The UDP database's columns
come from the validated sources (:attr:`risk.sources.Sources.udp`), each dated
by its vintages' release.
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd

from risk.sources import Sources
from risk.sources.udp_columns import UdpColumns

log = logging.getLogger(__name__)


def vintage_roles(udp: UdpColumns | None, as_of: date) -> dict[str, str | None] | None:
    """Which released vintages play UDP's current / base / past / rent-from roles at ``as_of`` (None without a
    UDP database, or with fewer than two complete vintages released)."""
    if udp is None:
        return None
    db = udp.frame
    released = sorted(((s, day) for s, day in udp.vintages.items() if day <= as_of), key=lambda v: v[1])
    full = [suffix for suffix, _ in released if f"per_all_li_{suffix}" in db.columns]
    if len(full) < 2:
        return None
    current, base = full[-1], full[-2]
    past = full[-3] if len(full) >= 3 else None
    # UDP measures the recent rent change from a vintage between the base and the current one
    order = dict(released)
    between = [s for s in order if order[base] <= order[s] < order[current] and f"real_mrent_{s}" in db.columns
               and s not in (current,)]
    rent_from = max(between, key=order.get) if between and max(between, key=order.get) != base else None
    return {"current": current, "base": base, "past": past, "rent_from": rent_from}


def typology_scores(sources: Sources, as_of: date) -> pd.Series | None:
    """Each tract's typology at ``as_of`` turned into a displacement-risk rank (higher = riskier), or None."""
    from risk.outcomes.typology.rules import RISK_ORDER, classify

    roles = vintage_roles(sources.udp, as_of)
    if roles is None or sources.udp is None:
        return None
    db = sources.udp.known_at(as_of).frame  # only the columns released by then
    try:
        typ = classify(db, current=roles["current"], base=roles["base"], past=roles["past"],
                       rent_from=roles["rent_from"])
    except KeyError as e:
        log.warning("udp_typology baseline unavailable: column %s is not in the demographics file", e)
        return None
    return typ["typology"].map(RISK_ORDER).astype("float64").replace({np.inf: np.nan})
