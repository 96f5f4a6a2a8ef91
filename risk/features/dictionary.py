"""The feature dictionary: every model feature's name, plain label, unit, family and direction.

This is the one place features are described; explanations, e-mails and the
web page read their words from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "mixed"]


@dataclass(frozen=True)
class Feature:
    """One feature. ``direction`` says whether higher values are thought to mean more risk.

    ``modelled`` is False for a level whose scale drifts between years (nominal
    dollars, rates per renter over a census count that is replaced, raw shares
    beside their region-relative twin): it is shown, but models see the
    comparable version, because a split learned on 2006 dollars means something
    else in 2014.
    """

    name: str
    label: str
    unit: str
    family: str
    direction: Direction
    description: str
    spatial_lag: bool = False
    modelled: bool = True

    def format(self, value: float) -> str:
        """The value in its unit, the way a person would write it."""
        if value != value:  # NaN
            return "not available"
        if self.unit == "%":
            return f"{value:+.1f}%" if "change" in self.name else f"{value:.1f}%"
        if self.unit == "share":
            return f"{100 * value:.0f}%"
        if self.unit == "pp":
            return f"{100 * value:+.1f} points"
        if self.unit.startswith("$"):
            return f"${value:,.0f}" + self.unit[1:]
        if self.unit == "flag":
            return "yes" if value >= 0.5 else "no"
        if self.unit in ("people", "households"):
            return f"{value:,.0f} {self.unit}"
        return f"{value:,.2f} {self.unit}".strip()


def _f(name: str, label: str, unit: str, family: str, direction: Direction, description: str,
       lag: bool = False, modelled: bool = True) -> Feature:
    return Feature(name, label, unit, family, direction, description, lag, modelled)


_RENT = [
    _f("rent_index", "Rent index", "$/month", "rent", "mixed", "Zillow Rent Index, newest month published.",
       modelled=False),
    _f("rent_index_vs_region", "Rent index against the regional median", "ratio", "rent", "mixed",
       "Zillow Rent Index over the median tract's in the same month."),
    *(_f(f"rent_change_{k}y", f"Rent change over {k} year{'s' if k > 1 else ''}", "%", "rent", "up",
         f"Change of the Zillow Rent Index over the {k} years to the newest month.", lag=True) for k in (1, 3, 5)),
    _f("home_value_index", "Home value index", "$", "rent", "mixed", "Zillow Home Value Index, newest month.",
       modelled=False),
    _f("home_value_index_vs_region", "Home value index against the regional median", "ratio", "rent", "mixed",
       "Zillow Home Value Index over the median tract's in the same month."),
    *(_f(f"home_value_change_{k}y", f"Home value change over {k} year{'s' if k > 1 else ''}", "%", "rent", "up",
         f"Change of the Zillow Home Value Index over the {k} years to the newest month.", lag=True)
      for k in (1, 3, 5)),
    _f("acs_median_rent", "Median gross rent (ACS)", "$/month", "rent", "mixed",
       "Median gross rent of the newest published Census/ACS release.", modelled=False),
    _f("acs_median_rent_vs_region", "Median gross rent against the regional median", "ratio", "rent", "mixed",
       "Median gross rent over the median tract's, in the newest release."),
    _f("acs_rent_change_annual", "Yearly median rent change between releases", "%", "rent", "up",
       "Annualised change of median gross rent between the two newest releases.", lag=True),
    _f("acs_median_home_value", "Median home value (ACS)", "$", "rent", "mixed",
       "Median value of owner-occupied homes, newest release.", modelled=False),
    _f("acs_median_home_value_vs_region", "Median home value against the regional median", "ratio", "rent",
       "mixed", "Median value of owner-occupied homes over the median tract's, in the newest release."),
    _f("acs_home_value_change_annual", "Yearly median home value change between releases", "%", "rent", "up",
       "Annualised change of median home value between the two newest releases.", lag=True),
]

_PER_RENTER = "per 100 renter households"
_EVICTIONS = [
    # rates per renter drift with the county's filing level and jump when a new census count replaces the old
    _f("eviction_filing_rate_12m", "Eviction filings in the latest year", _PER_RENTER, "evictions", "up",
       "Filings in the newest published year per 100 renter households (census-count denominator).",
       lag=True, modelled=False),
    _f("eviction_filing_rate_36m", "Eviction filings over three years", _PER_RENTER, "evictions", "up",
       "Filings in the three newest years per 100 renter households per year.", lag=True, modelled=False),
    _f("eviction_filing_rate_change_3y", "Change in eviction filings", _PER_RENTER, "evictions", "up",
       "Three-year filing rate minus the three years before it.", lag=True, modelled=False),
    _f("eviction_filing_rate_vs_county", "Eviction filings against the county", "ratio", "evictions", "up",
       "Latest-year filing rate divided by the county's.", modelled=False),
    _f("eviction_filing_rate_longrun", "Eviction filings, long-run average", _PER_RENTER, "evictions", "up",
       "Yearly filings averaged over every published year per 100 renter households.", modelled=False),
    _f("eviction_filing_rate_36m_vs_longrun", "Recent eviction filings against the long-run average", _PER_RENTER,
       "evictions", "mixed",
       "Three-year filing rate minus the long-run average: rates far below their usual level tend to come back.",
       modelled=False),
    _f("eviction_judgment_rate_36m", "Eviction judgments over three years", _PER_RENTER, "evictions", "up",
       "Judgments (evictions) in the three newest years per 100 renter households per year.", modelled=False),
    _f("eviction_filing_ratio_12m", "Eviction filings in the latest year against the county", "ratio", "evictions",
       "up", "Newest year's filings over what the county's rate gives for the tract's renters, pulled toward the "
       "county's where the tract is small (empirical Bayes)."),
    _f("eviction_filing_ratio_36m", "Eviction filings over three years against the county", "ratio", "evictions",
       "up", "Three newest years' filings over what the county's rate gives, pulled toward the county's where the "
       "tract is small (empirical Bayes).", lag=True),
    _f("eviction_filing_ratio_change_1y", "Latest-year eviction filings against the usual six years", "%",
       "evictions", "up", "Change of the latest year's filings against the county over the six years up to it: "
       "a tract already rising."),
    _f("eviction_filing_ratio_change_3y", "Change in eviction filings against the county", "%", "evictions", "up",
       "Change of the three newest years' filings against the county over the three years before.", lag=True),
]

_PERMITS = [
    *(_f(f"permits_new_{w}m", f"New-construction permits, {w} months", "per 1,000 homes", "permits", "up",
         f"New-building permits issued in the last {w} months per 1,000 housing units.", lag=w == 36)
      for w in (12, 36)),
    *(_f(f"permits_demolition_{w}m", f"Demolition permits, {w} months", "per 1,000 homes", "permits", "up",
         f"Demolition permits issued in the last {w} months per 1,000 housing units.", lag=w == 36)
      for w in (12, 36)),
    _f("permits_alteration_12m", "Addition/alteration permits, 12 months", "per 1,000 homes", "permits", "up",
       "Addition and alteration permits issued in the last 12 months per 1,000 housing units."),
    *(_f(f"units_added_{w}m", f"Homes added by permits, {w} months", "per 1,000 homes", "permits", "up",
         f"Housing units added by permits issued in the last {w} months per 1,000 existing units.", lag=w == 36)
      for w in (12, 36)),
    _f("units_removed_36m", "Homes removed by permits, 36 months", "per 1,000 homes", "permits", "up",
       "Housing units removed by permits issued in the last 36 months per 1,000 existing units."),
    *(_f(f"permit_value_{w}m", f"Permitted construction value, {w} months", "$ per home", "permits", "up",
         f"Declared value of permits issued in the last {w} months per existing housing unit.", lag=w == 36)
      for w in (12, 36)),
]

_SHARES = {
    "low_income_share": ("Low-income households", "Share of households under 80% of the regional median income."),
    "renter_share": ("Renter households", "Share of occupied homes that are rented."),
    "nonwhite_share": ("People of color", "Share of residents who are not non-Hispanic white."),
    "college_share": ("College educated adults", "Share of adults 25+ with a bachelor's degree or more."),
    "poverty_rate": ("People in poverty", "Share of residents below the poverty line."),
    "rent_burden": ("Rent burden", "Median gross rent as a share of household income."),
}
_DIRECTION: dict[str, Direction] = {"college_share": "mixed"}

_DEMOGRAPHICS = [
    feature
    for measure, (label, text) in _SHARES.items()
    for feature in (
        # the share and its difference from the region rank tracts alike in a release; the difference also
        # stays comparable when the region itself changes between releases
        _f(measure, label, "share", "demographics", _DIRECTION.get(measure, "up"), text + " Newest release.",
           modelled=False),
        _f(f"{measure}_vs_region", f"{label} against the regional median", "pp", "demographics",
           _DIRECTION.get(measure, "up"), f"Difference from the median tract of the region. {text}"),
    )
]

_GROWTH = [
    _f("renter_households_change_annual", "Yearly change in renter households between censuses", "%",
       "demographics", "up", "Annualised change of renter households between the two newest census counts: more "
       "renters means more filings."),
]

_SIZE = [
    _f("population", "Population", "people", "demographics", "mixed",
       "People living in the tract (newest census count): a tract too small to score is not ranked.",
       modelled=False),
    _f("households", "Households", "households", "demographics", "mixed",
       "Households in the tract (newest census count); people far beyond its households live in group quarters "
       "(dormitories, prisons, barracks).", modelled=False),
    _f("renter_households", "Renter households", "households", "demographics", "mixed",
       "Renter households in the tract (newest census count): eviction rates of a handful of renters are noise.",
       modelled=False),
]

_COVERAGE = [
    _f(f"cov_{family}", f"{family.replace('_', ' ').capitalize()} data available", "flag", "coverage", "mixed",
       f"1 when the {family.replace('_', ' ')} family covers the tract at the as-of date.")
    for family in ("rent_index", "evictions", "permits", "demographics")
]

BASE_FEATURES: tuple[Feature, ...] = (*_RENT, *_EVICTIONS, *_PERMITS, *_DEMOGRAPHICS, *_GROWTH, *_SIZE,
                                      *_COVERAGE)


def _lagged(f: Feature) -> Feature:
    return Feature(f"nbr_{f.name}", f"{f.label} in neighboring tracts", f.unit, f.family, f.direction,
                   f"Mean over contiguous tracts: {f.description}", modelled=f.modelled)


LAG_FEATURES: tuple[Feature, ...] = tuple(_lagged(f) for f in BASE_FEATURES if f.spatial_lag)
FEATURES: tuple[Feature, ...] = (*BASE_FEATURES, *LAG_FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}


def feature_names(spatial_lags: bool = True) -> list[str]:
    """Feature columns in dictionary order."""
    return [f.name for f in (FEATURES if spatial_lags else BASE_FEATURES)]


def model_feature_names(spatial_lags: bool = True) -> list[str]:
    """The columns models train on: every feature whose scale is comparable across years."""
    return [f.name for f in (FEATURES if spatial_lags else BASE_FEATURES) if f.modelled]
