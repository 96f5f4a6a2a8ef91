"""The UDP typology as a point-in-time ranking baseline.

At an as-of date the typology can only use the vintages released by then:
before ACS 2014-2018 (December 2019) that is Census 2000 as the current
vintage against 1990, with no recent rent change.
"""

from __future__ import annotations

import functools
import logging
from datetime import date

import numpy as np
import pandas as pd

from risk.core.settings import Settings
from risk.sources._tables import SENTINEL_MAX

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _database(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"GEOID": str, "FIPS": str}, low_memory=False)
    key = "GEOID" if "GEOID" in frame.columns else "FIPS"
    frame.index = frame[key].astype("string").str.replace(r"\.0$", "", regex=True).str.zfill(11)
    numeric = frame.select_dtypes("number")
    frame[numeric.columns] = numeric.mask(numeric <= SENTINEL_MAX)
    return frame


def vintage_roles(settings: Settings, as_of: date) -> dict[str, str | None] | None:
    """Which released vintages play UDP's current / base / past / rent-from roles at ``as_of``."""
    demo = settings.sources.demographics
    if demo.format != "udp_database" or demo.path is None:
        return None
    db = _database(str(demo.path))
    released = sorted((v for v in demo.vintages if v.released <= as_of), key=lambda v: v.released)
    full = [v.suffix for v in released if f"per_all_li_{v.suffix}" in db.columns]
    if len(full) < 2:
        return None
    current, base = full[-1], full[-2]
    past = full[-3] if len(full) >= 3 else None
    # UDP measures the recent rent change from a vintage between the base and the current one
    order = {v.suffix: v.released for v in released}
    between = [s for s in order if order[base] <= order[s] < order[current] and f"real_mrent_{s}" in db.columns
               and s not in (current,)]
    rent_from = max(between, key=order.get) if between and max(between, key=order.get) != base else None
    return {"current": current, "base": base, "past": past, "rent_from": rent_from}


def typology_scores(settings: Settings, as_of: date) -> pd.Series | None:
    """Each tract's typology turned into a displacement-risk rank (higher = riskier), or None."""
    from risk.outcomes.typology.rules import RISK_ORDER, classify

    roles = vintage_roles(settings, as_of)
    if roles is None:
        return None
    db = _database(str(settings.sources.demographics.path))
    try:
        typ = classify(db, current=roles["current"], base=roles["base"], past=roles["past"],
                       rent_from=roles["rent_from"])
    except KeyError as e:
        log.warning("udp_typology baseline unavailable: column %s is not in the demographics file", e)
        return None
    return typ["typology"].map(RISK_ORDER).astype("float64").replace({np.inf: np.nan})
