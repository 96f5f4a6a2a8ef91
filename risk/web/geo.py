"""Tract shapes for the map and the GeoJSON export: read once per process, simplified, coordinates rounded.

The boundaries come from the configured source (``sources.boundaries``),
loaded with every other source so the pages can also say how fresh each
family is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from risk.alerts.messages import TIER_COLOURS, tract_names
from risk.alerts.recipients import named_areas
from risk.core.settings import Settings
from risk.service.regions import load_project
from risk.sources import Sources

SIMPLIFY_DEG = 0.0002
"""About 20 m: invisible at the zoom a county map opens at, and a fraction of the bytes."""
DECIMALS = 5


@dataclass(frozen=True)
class Geography:
    """Tract names, named areas and simplified shapes (GeoJSON geometry dicts), by GEOID."""

    sources: Sources
    names: dict[str, str]
    areas: dict[str, set[str]]
    shapes: dict[str, dict[str, Any]]
    bounds: tuple[float, float, float, float] | None
    """The mapped tracts' extent; None when no tract has a shape (no boundaries: the pages show no map)."""
    regions: dict[str, str]
    """Each tract's region (the project's one region, or its region among several)."""


def load_geography(settings: Settings) -> Geography:
    """Load the sources once and derive what the map and the filters need."""
    sources = load_project(settings).sources
    tracts = sources.tracts
    named = named_areas(settings.alerts, tracts)
    areas: dict[str, set[str]] = {name: set(members) for name, members in sorted(named.items())}
    for regional in settings.regional():
        for fips in regional.region.county_fips:
            areas[f"County {fips}"] = {g for g in tracts.index if g.startswith(fips)}
    # a region configured without boundaries has tracts without shapes: they are listed, not mapped
    shaped = tracts[tracts.geometry.notna().to_numpy() & ~tracts.geometry.is_empty.to_numpy()]
    simple = shapely.simplify(np.asarray(shaped.geometry.values), SIMPLIFY_DEG, preserve_topology=True)
    rounded = shapely.transform(simple, lambda xy: np.round(xy, DECIMALS))
    shapes = {g: json.loads(shapely.to_geojson(s)) for g, s in zip(shaped.index, rounded, strict=True)}
    bounds = tuple(float(v) for v in shaped.total_bounds) if len(shaped) else None
    regions = {str(g): str(r) for g, r in tracts["region"].items()}
    return Geography(sources, tract_names(tracts, named), areas, shapes, bounds, regions)  # type: ignore[arg-type]


def feature_collection(geography: Geography, properties: dict[str, dict[str, Any]]) -> bytes:
    """A GeoJSON FeatureCollection of the tracts in ``properties`` (GEOID -> properties), as UTF-8 bytes."""
    features = [{"type": "Feature", "id": g, "properties": props, "geometry": geography.shapes[g]}
                for g, props in properties.items() if g in geography.shapes]
    return json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"),
                      default=str).encode("utf-8")


def tier_colour(tier: str) -> str:
    """The map colour of a tier (the e-mails use the same)."""
    return TIER_COLOURS.get(tier, "#e0e0e0")
