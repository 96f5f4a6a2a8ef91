"""Who hears about which tracts: recipients from the config and its CSV, named areas, and the check that
every area a recipient follows matches at least one tract."""

from __future__ import annotations

import csv

import geopandas as gpd
import pandas as pd
from pydantic import ValidationError

from risk.core.errors import ConfigError, ConfigIssue
from risk.core.settings import AlertSettings, Recipient, Settings, config_error


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
    """Tracts of each named area: those whose interior point lies inside it; with several regions, each region
    is an area too (by its name)."""
    regions = ({str(n): set(g.index) for n, g in tracts.groupby("region")}
               if "region" in tracts.columns and tracts["region"].nunique() > 1 else {})
    if cfg.areas_file is None:
        return regions
    areas = gpd.read_file(cfg.areas_file).to_crs(tracts.crs)
    if cfg.areas_name_field not in areas.columns:
        raise ConfigError(str(cfg.areas_file), [ConfigIssue(
            "alerts.areas_name_field", f"no property '{cfg.areas_name_field}' in the areas file")])
    points = gpd.GeoDataFrame(geometry=tracts.geometry.representative_point(), index=tracts.index, crs=tracts.crs)
    joined = gpd.sjoin(points.reset_index(names="geoid"), areas[[cfg.areas_name_field, "geometry"]],
                       predicate="within")
    # the named areas first: a tract's name shows the first area it lies in ("Seattle" before its region)
    return {str(n): set(g["geoid"]) for n, g in joined.groupby(cfg.areas_name_field)} | regions


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


def unknown_areas(recipients: list[Recipient], tracts: pd.Index, areas: dict[str, set[str]]
                  ) -> list[tuple[int, Recipient, str]]:
    """(position, recipient, area) for every area that names no tract: a typo would silently mute a recipient."""
    return [(i, r, area) for i, r in enumerate(recipients) for area in r.areas
            if area != "all" and not recipient_tracts(Recipient(name=r.name, email=r.email, areas=(area,)),
                                                      tracts, areas)]


def check_recipients(settings: Settings, recipients: list[Recipient], tracts: gpd.GeoDataFrame) -> None:
    """Refuse the configuration when a recipient follows an area that matches no tract, naming both."""
    unknown = unknown_areas(recipients, tracts.index, named_areas(settings.alerts, tracts))
    if not unknown:
        return
    in_file = len(settings.alerts.recipients)
    # a tract without a shape cannot lie in a named area: say so rather than leave the reader to guess
    why = (" (the tracts have no boundaries, so no tract can lie in an area of alerts.areas_file)"
           if settings.alerts.areas_file is not None and not tracts.geometry.notna().any() else "")
    issues = [(f"alerts.recipients.{i}.areas" if i < in_file else "alerts.recipients_csv",
               f"recipient {r.name or r.email} <{r.email}> follows '{area}', which matches no tract "
               f"(an 11-digit GEOID, a 5-digit county FIPS code, 'all' or a name in alerts.areas_file){why}")
              for i, r, area in unknown]
    raise config_error(settings, issues)

