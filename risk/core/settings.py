"""The one settings tree: every key of ``config.yaml``, its default and its help.

``load_settings`` reads the file once into frozen, validated models and is the
only place that knows about YAML. Every problem is reported at once, each
naming its section, key and line. Relative paths are resolved against the
config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import difflib
import os
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from risk.core.errors import ConfigError, ConfigIssue

DEFAULT_CONFIG = "config.yaml"
CONFIG_ENV = "RISK_CONFIG"
MAX_CONFIG_NODES = 20_000
"""Most YAML nodes ``config.yaml`` may hold once its aliases are expanded: a real config has a few hundred,
while a handful of nested aliases (a "billion laughs" file) would expand to billions before any check ran."""
MAX_CONFIG_BYTES = 1_000_000
"""Largest ``config.yaml`` read, in bytes."""


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = Path(os.path.expanduser(str(value)))
    if base is not None and not value.is_absolute():
        value = Path(os.path.normpath(Path(base) / value))
    return value


def _must_exist(value: Path) -> Path:
    if not value.exists():
        raise ValueError(f"file not found: {value}")
    return value


RelPath = Annotated[Path, AfterValidator(_resolve)]
"""A path relative to the config file's folder."""

InputPath = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist)]
"""An input file that must exist, relative to the config file's folder."""


class _Section(BaseModel):
    # defaults are validated too, so a default path is resolved against the config folder like a given one
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, validate_default=True)


class RegionSettings(_Section):
    """Which tracts the system watches."""

    name: str = Field("King County, WA", description="Name shown in reports and e-mails.")
    county_fips: tuple[str, ...] = Field(
        ("53033",),
        description="5-digit state+county FIPS codes of the region; records of other counties are dropped.",
    )
    ignore_geoids: tuple[str, ...] = Field(
        (),
        description="Tract GEOIDs left out everywhere, boundaries included: water-only tracts that appear in "
        "source files without being in the boundaries, or a tract whose rows are broken beyond repair.",
    )

    county_names: dict[str, str] = Field(
        default_factory=dict,
        description="Names of the region's counties by 5-digit FIPS (`{\"06037\": \"Los Angeles County\"}`), for "
        "tract names such as 'Census tract 9800.21, Los Angeles County'. Optional: an Eviction Lab file's "
        "parent-location names them too.")

    @model_validator(mode="after")
    def _named_counties_are_the_regions(self) -> RegionSettings:
        other = sorted(set(self.county_names) - set(self.county_fips))
        if other:
            raise ValueError(f"county_names names counties that are not in county_fips: {other}")
        return self

    @field_validator("county_fips")
    @classmethod
    def _five_digits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not (len(c) == 5 and c.isdigit())]
        if bad or not v:
            raise ValueError(f"need one or more 5-digit FIPS codes, got {list(v)}")
        return v

    @field_validator("ignore_geoids")
    @classmethod
    def _eleven_digits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [g for g in v if not (len(g) == 11 and g.isdigit())]
        if bad:
            raise ValueError(f"GEOIDs must be 11-digit strings (quote them in YAML), got {bad}")
        return v


class PathsSettings(_Section):
    """Where the system keeps its state; relative to the config file's folder."""

    @field_validator("database")
    @classmethod
    def _database(cls, v: str, info: ValidationInfo) -> str:
        return v if "://" in v else str(_resolve(Path(v), info))

    database: str = Field("state/risk.sqlite", description="SQLite file of runs, scores and the outbox, or any "
                          "SQLAlchemy URL (postgresql+psycopg://user@host/db with the `postgres` extra).")
    database_busy_timeout_s: float = Field(
        30.0, gt=0, le=86_400, description="How long a command waits for a lock another process holds on the "
        "database (SQLite's busy timeout, PostgreSQL's lock_timeout) before it stops with exit 6.")
    models: RelPath = Field(Path("models"), description="Trained model registry.")
    reports: RelPath = Field(Path("reports"), description="Backtest and explanation reports.")
    features: RelPath = Field(Path("state/features"), description="Feature tables written by `risk run`.")
    cache: RelPath | None = Field(Path("state/cache"), description="Backtest work reused across runs (features, "
                                  "labels and fits of origins whose inputs did not change), keyed by content; "
                                  "safe to delete. null switches reuse off.")


class BoundariesSource(_Section):
    """Tract boundaries (any format geopandas reads, or a table with a WKT geometry column); they define the set of
    tracts. A statewide file, such as a Census cartographic-boundary shapefile, is cut to `region.county_fips`;
    any declared CRS is converted. Leave the section out to run without boundaries: the tracts are then those the
    other sources name, spatial features are missing and the pages list tracts without a map."""

    path: InputPath = Field(description="GeoJSON (.geojson/.json), GeoPackage (.gpkg), shapefile (.shp, with its "
                            ".shx, .dbf and .prj beside it, as unzipped from the Census's cb_2018_53_tract_500k.zip), "
                            "any other format geopandas reads, or a CSV with `geometry_column`.")
    layer: str | None = Field(None, description="Layer name inside a GeoPackage (default: the first).")
    geoid_column: str = Field("GEOID", description="Column holding the 11-digit tract GEOID.")
    name_column: str | None = Field("NAME", description="Column with a short tract name, if any (without one, "
                                    "a tract is named by its number as the Census writes it: `9800.21`).")
    geometry_column: str | None = Field(
        None, description="A CSV's column of polygons as WKT text (`POLYGON ((...))`); the file is then read as "
        "a table, not as a GIS file.")
    crs: str | None = Field(
        None, description="The CRS of a WKT column's coordinates (`EPSG:4326`); without it longitude/latitude is "
        "assumed when the coordinates fit, with a warning.")


class Vintage(_Section):
    """One Census/ACS release: the suffix of its columns and the date it was published."""

    suffix: str = Field(description="Column suffix in the UDP database (`90`, `00`, `12`, `18`).")
    label: str = Field(description="Human name, e.g. `ACS 2008-2012`.")
    released: date = Field(description="Publication date: the vintage is used only on or after it.")
    next_release: date | None = Field(
        None, description="When the release after this one is due (ACS 5-year: each December). While this is the "
        "newest vintage it is not stale until that date plus `sources.demographics.late_release_days`, however old "
        "it is; without it, `max_age_days` decides.")
    medians_reliable: bool = Field(
        True,
        description="False for vintages crosswalked from older tracts, whose medians were scaled "
        "down by the crosswalk weights; their median columns are then ignored.",
    )
    shares_over_one: Literal["error", "drop"] = Field(
        "error",
        description="`drop` turns shares above 1 into missing values with a warning instead of failing; "
        "for UDP's 1990 low-income share, which divides by 2000 households.",
    )


class CensusTable(_Section):
    """A raw Census/ACS table on the boundaries' tract vintage."""

    path: InputPath = Field(description="CSV with a FIPS/GEOID column and suffixed Census variables.")
    vintage: Vintage = Field(description="The release the table comes from.")


class DemographicsSource(_Section):
    """Demographic vintages: the UDP tract database (or UDP's typology output) and/or raw Census/ACS tables."""

    format: Literal["udp_database", "udp_typology_output", "census_tables"] = Field(
        "udp_database", description="`udp_database` (one wide file, per-vintage suffixes), `udp_typology_output` "
        "(UDP's `<Metro>_typology_output.csv`: the database's columns plus the typology's flags, read the same way) "
        "or `census_tables`."
    )
    path: InputPath | None = Field(None, description="The UDP database or typology-output CSV (formats udp_database, "
                                   "udp_typology_output).")
    vintages: tuple[Vintage, ...] = Field((), description="Vintages present in the UDP file.")
    tables: tuple[CensusTable, ...] = Field((), description="Raw tables (format census_tables).")
    max_age_days: int = Field(
        2557, ge=1, description="The newest vintage released longer ago than this is reported as stale (about "
        "7 years: ACS 5-year tables refresh every year, the decennial census every ten).")
    required: bool = Field(False, description="Fail the run when the newest vintage is stale.")
    late_release_days: int = Field(
        90, ge=0, description="Days a vintage's `next_release` may slip before the vintage counts as stale.")

    @property
    def all_vintages(self) -> list[Vintage]:
        """Every vintage configured: the database's and the raw tables'."""
        return [*self.vintages, *(t.vintage for t in self.tables)]

    @model_validator(mode="after")
    def _format_needs(self) -> DemographicsSource:
        if self.format in ("udp_database", "udp_typology_output") and (self.path is None or not self.vintages):
            raise ValueError(f"format {self.format} needs `path` and at least one entry in `vintages`")
        if self.format == "census_tables" and not self.tables:
            raise ValueError("format census_tables needs at least one entry in `tables`")
        return self


class EvictionVintage(_Section):
    """Which Census/ACS release Eviction Lab's demographic columns come from, by year."""

    first_year: int
    last_year: int
    label: str
    released: date


class RenterAnchor(_Section):
    """A year whose renter-household count is a real census count, not an interpolation."""

    year: int
    released: date


class EvictionsSource(_Section):
    """Eviction Lab tract file."""

    format: Literal["evictionlab"] = Field("evictionlab", description="Eviction Lab tract CSV (v1 schema).")
    path: InputPath = Field(description="The CSV file.")
    available_after_days: int = Field(
        0, ge=0, description="Days after a year ends before its counts may be used (publication lag)."
    )
    max_age_days: int = Field(
        730, ge=1, description="Counts of a year that became available longer ago than this are stale and unused."
    )
    max_filings_per_renter_household: float = Field(
        10.0, gt=0, description="More filings than this per renter household is reported as impossible."
    )
    vintages: tuple[EvictionVintage, ...] = Field(
        (), description="Release of the demographic columns per range of years (they are step functions)."
    )
    renter_anchors: tuple[RenterAnchor, ...] = Field(
        (),
        description="Years whose renter counts are census counts; rates use the newest one released "
        "by the as-of date, because the yearly counts in between are interpolated toward later censuses.",
    )
    required: bool = Field(False, description="Fail the run when this source is stale or missing, instead of "
                           "dropping its features from the run.")


class RentSource(_Section):
    """Rent and home-value indices. ACS median rent (from demographics) is always used as well."""

    format: Literal["none", "zillow_tract", "zillow_zip"] = Field(
        "none", description="`none` (ACS fallback only), `zillow_tract` (long) or `zillow_zip` (wide)."
    )
    path: InputPath | None = Field(None, description="Zillow file (tract long format or ZIP wide format).")
    rent_path: InputPath | None = Field(
        None, description="For zillow_zip: a second wide file with the rent index (path holds home values)."
    )
    crosswalk: InputPath | None = Field(
        None, description="For zillow_zip: ZIP-to-tract crosswalk CSV (HUD USPS format: ZIP, TRACT, RES_RATIO)."
    )
    available_after_days: int = Field(
        15, ge=0, description="Days after a month ends before its index value is published."
    )
    max_age_days: int = Field(
        183, ge=1, description="An index whose newest month is older than this is stale (the series ended)."
    )
    required: bool = Field(False, description="Fail the run when the index is stale or missing.")

    @model_validator(mode="after")
    def _format_needs(self) -> RentSource:
        if self.format != "none" and self.path is None:
            raise ValueError(f"format {self.format} needs `path`")
        if self.format == "zillow_zip" and self.crosswalk is None:
            raise ValueError("format zillow_zip needs `crosswalk`")
        return self


class PermitFile(_Section):
    """One Socrata permit export."""

    path: InputPath = Field(description="CSV export.")
    schema_: Literal["auto", "seattle_legacy", "seattle_sdci"] = Field(
        "auto",
        alias="schema",
        description="`seattle_legacy` (Building Permits, `Application/Permit Number`...), "
        "`seattle_sdci` (`PermitNum`, `HousingUnitsAdded`...), or `auto` to detect from the header.",
    )
    complete_from: date | None = Field(
        None, description="Issue date from which the export is complete. An export selected by application date "
        "misses permits issued early on whose applications came before it (Seattle SDCI: from about 2014-11).")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, validate_default=True)


class PermitsSource(_Section):
    """Building permits, geocoded to tracts by point in polygon."""

    files: tuple[PermitFile, ...] = Field(description="One or more Socrata exports.")
    coverage_tracts: InputPath | None = Field(
        None,
        description="CSV with a GEOID column: the tracts the permit office covers (its jurisdiction). "
        "Default: tracts with at least one permit on or before the as-of date.",
    )
    max_gap_days: int = Field(
        120, ge=1, description="A file whose newest record is older than this at the as-of date is stale."
    )
    max_outside_share: float = Field(
        0.5, gt=0, le=1, description="A file placing more than this share of its located permits outside every "
        "tract of the region is an error (swapped latitude and longitude, another city's file).")
    required: bool = Field(False, description="Fail the run when the permits are stale or missing.")


class SourcesSettings(_Section):
    """Input files, one entry per family."""

    boundaries: BoundariesSource | None = Field(
        None, description="Tract polygons; without them the tracts are those the other sources name, and spatial "
        "features, permit geocoding and the map are off.")
    demographics: DemographicsSource | None = Field(
        None, description="Census/ACS vintages; without them, demographic features are missing (and so is the "
        "low_income_loss outcome), though an Eviction Lab file still brings its own demographic columns.")
    evictions: EvictionsSource | None = None
    rent: RentSource = RentSource()
    permits: PermitsSource | None = None
    encoding: str = Field("utf-8", description="Text encoding of every CSV input.")
    max_file_mb: int = Field(
        2048, ge=1, description="Largest input file read, in MB of 1,048,576 bytes: its size on disk, and for a "
        ".gz file its size once decompressed (counted while streaming, so a gzip bomb stops here). A file of "
        "exactly this size passes, one byte more is refused (exit 3, naming the file and the limit).")
    max_field_chars: int = Field(
        100_000, ge=1, description="Longest CSV field, in characters as stored (bytes between two delimiters, "
        "quotes included). A field of exactly this length passes, one more is refused (exit 3, naming the file "
        "and line): a file with no line ends or a quote never closed is stopped without being read whole.")
    coverage_drop: float = Field(
        0.2, gt=0, le=1, description="Report a source whose tract coverage fell by more than this share since "
        "the previous run (0.2 = 20%).")
    coverage_collapse: float = Field(
        0.5, gt=0, le=1, description="Fail the run (exit 3, nothing trained or promoted) when a source that is "
        "not stale covers more than this share fewer tracts than in the previous run (0.5 = half); a broken "
        "file, not the city, is the likely cause. 1 switches the check off.")


class FeatureSettings(_Section):
    """Point-in-time feature construction."""

    spatial_lags: bool = Field(True, description="Add the mean of contiguous neighbours for market-pressure features.")
    contiguity_tolerance_m: float = Field(
        5.0, ge=0, description="Tracts closer than this (metres) count as touching; absorbs generalised boundaries."
    )


class EvictionSurgeSettings(_Section):
    """`eviction_surge`: a statistically supported rise of a tract's eviction filings against the county."""

    horizon_years: int = Field(3, ge=1, le=3, description="Outcome window (t, t+h] in years after the origin year t.")
    baseline_years: int = Field(6, ge=1, le=6, description="Years up to and including t that form the baseline "
                                "rate; a long baseline keeps one unusually quiet spell from passing for a surge.")
    alpha: float = Field(0.005, gt=0, lt=0.5, description="One-sided significance level of the rise (conditional test "
                         "of two rates against the county trend; year-to-year noise is negative binomial, its dispersion growing "
                         "with the filing count).")
    min_rise: float = Field(0.25, ge=0, description="The rate must also rise this much more than the county's (0.25 = 25%).")
    min_filings: int = Field(10, ge=0, description="Tracts with fewer filings in baseline and window together are not labelled.")
    min_renter_households: int = Field(200, ge=0, description="Tracts with fewer renter households at t are not labelled.")
    first_origin: int = Field(2005, description="First origin year: the 3-year filing change needs six years of counts.")
    min_train_origins: int = Field(3, ge=1, description="A test origin needs this many closed training origins "
                                   "(fit, early stopping, calibration).")


DEFAULT_SAMPLE_FRACTION = 0.08
"""The share of households sampled that a vintage without its own ``sample_fractions`` entry is taken to have
(ACS 5-year, about 1 in 12)."""


class LowIncomeLossSettings(_Section):
    """`low_income_loss`: low-income households fell by more than the regional trend and the sampling noise."""

    min_loss: float = Field(0.10, gt=0, lt=1, description="Minimum relative loss beyond the regional trend (0.10 = 10%).")
    z: float = Field(1.96, gt=0, description="Log-change must also exceed z standard errors of the two survey estimates.")
    min_households: int = Field(50, ge=0, description="Tracts with fewer low-income households at t are not labelled.")
    design_effect: float = Field(1.5, ge=1, description="Survey design effect applied to the sampling variance.")
    min_train_origins: int = Field(1, ge=1, description="Closed training origins a test origin needs (the "
                                   "vintages give only 1990->2000 before 2000->2018).")
    sample_fractions: dict[str, float] = Field(
        {"90": 1 / 6, "00": 1 / 6, "12": 0.08, "18": 0.08},
        description="Share of households sampled per vintage suffix (decennial long form about 1 in 6; ACS 5-year "
        "about 1 in 12); gives the standard errors the database lacks.",
    )


class TierSettings(_Section):
    """Tiers by percentile rank of the probability among a run's ranked tracts, and which tracts are not ranked
    (too small to score, or living mostly in group quarters)."""

    high: float = Field(0.95, gt=0, lt=1, description="Percentile rank at or above which a tract is `high`.")
    elevated: float = Field(0.85, gt=0, lt=1, description="... `elevated`.")
    watch: float = Field(0.70, gt=0, lt=1, description="... `watch`; below it `low`.")
    min_population: int = Field(100, ge=0, description="A tract with fewer people (newest census count) is not "
                                "ranked: it is listed apart as too small to score.")
    min_households: int = Field(40, ge=0, description="... fewer households.")
    min_renter_households: int = Field(10, ge=0, description="... fewer renter households (an eviction rate of "
                                       "a handful of renters is noise).")
    group_quarters_ratio: float = Field(8.0, gt=1, description="A tract with more people per household than this "
                                        "lives mostly in group quarters (dormitories, prisons, barracks): it is not "
                                        "ranked either, and is listed apart. Households average 2.5 to 3 people and "
                                        "the largest family neighbourhoods 5 to 6 (the 99th percentile of the 21 "
                                        "example regions' tracts is 5.4): a lower value would unrank them.")

    @model_validator(mode="after")
    def _ordered(self) -> TierSettings:
        if not self.watch < self.elevated < self.high:
            raise ValueError("need watch < elevated < high")
        return self


class RetrainSettings(_Section):
    """When the weekly run retrains the model (it always trains when there is no champion)."""

    policy: Literal["every_n_weeks", "data_changed", "never"] = Field(
        "data_changed", description="`every_n_weeks`, `data_changed` (an input file's hash changed since the "
        "champion was trained) or `never`.")
    every_weeks: int = Field(4, ge=1, description="For every_n_weeks: retrain when the champion is this many "
                             "weeks older than the run's as-of date.")


OutcomeName = Literal["eviction_surge", "low_income_loss", "typology_transition"]
"""The outcomes :mod:`risk.outcomes.registry` defines, declared here because settings sit below the outcomes
stage and may not import it. A Literal (not a string checked later) keeps ``model.outcome`` validated when the
file is read, with the choices named in the error; the registry is the source of truth for everything
else about an outcome and refuses to load unless its names are exactly these, in this order (a test checks it
too), so a name cannot be added in one place and forgotten in the other."""
OUTCOME_NAMES: tuple[str, ...] = get_args(OutcomeName)


class ModelSettings(_Section):
    """Outcome, training, backtest and promotion."""

    outcome: OutcomeName = Field(
        "eviction_surge", description="The outcome the production model predicts.")
    eviction_surge: EvictionSurgeSettings = EvictionSurgeSettings()
    low_income_loss: LowIncomeLossSettings = LowIncomeLossSettings()
    seed: int = Field(20240601, description="Seed of every random step: same data and config, same model file.")
    null_simulations: int = Field(20, ge=5, description="Simulated no-change worlds per origin for the null check.")
    bootstrap: int = Field(500, ge=50, description="Tract-cluster bootstrap resamples for 95% intervals.")
    promotion_tolerance: float = Field(0.02, ge=0, description="A challenger replaces the champion unless its "
                                       "backtest PR-AUC is worse by more than this.")
    tiers: TierSettings = TierSettings()
    retrain: RetrainSettings = RetrainSettings()


class SmtpSettings(_Section):
    """SMTP server; credentials only from the environment variables named here."""

    host: str = Field("127.0.0.1", description="SMTP host.")
    port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    security: Literal["none", "starttls", "ssl"] = Field("none", description="`none`, `starttls` or `ssl`.")
    username_env: str | None = Field(None, description="Environment variable holding the SMTP user name.")
    password_env: str | None = Field(None, description="Environment variable holding the SMTP password.")
    timeout_s: float = Field(10.0, gt=0, description="Seconds before a connection or command times out.")


class DeliverySettings(_Section):
    """How messages leave the outbox."""

    transport: Literal["file", "smtp"] = Field("file", description="`file` writes .eml files; `smtp` sends.")
    outbox_dir: RelPath = Field(Path("outbox"), description="Folder of .eml files written by the file transport.")
    from_: str = Field("Displacement alerts <alerts@example.org>", alias="from", description="Sender address.")
    smtp: SmtpSettings = SmtpSettings()
    max_attempts: int = Field(5, ge=1, description="Attempts for a temporary failure before it waits for the next run.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each attempt.")
    base_url: str = Field("http://127.0.0.1:8000", description="Web address of the review pages, for links.")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, validate_default=True)

    @field_validator("from_")
    @classmethod
    def _address(cls, v: str) -> str:
        from email.utils import parseaddr

        if "@" not in parseaddr(v)[1] or "\n" in v or "\r" in v:
            raise ValueError(f"not an e-mail address: {v!r}")
        return v


class Recipient(_Section):
    """One subscriber."""

    name: str = Field(description="Name shown in the greeting.")
    email: str = Field(description="E-mail address.")
    areas: tuple[str, ...] = Field(("all",), description="`all`, tract GEOIDs, 5-digit county FIPS, or named areas.")
    immediate: bool = Field(False, description="Also send an immediate message for new high-tier alerts.")
    empty_digest: bool = Field(False, description="Send a short 'no new alerts' digest when nothing alerts.")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        from email_validator import EmailNotValidError, validate_email

        # checked as the transport will send it: non-ASCII addresses need SMTPUTF8, which the sender asks for
        try:
            validate_email(v.strip(), check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError as e:
            raise ValueError(f"not a valid e-mail address: {v!r} ({e})") from e
        return v.strip()


class AlertSettings(_Section):
    """Which tracts alert, and who hears about them."""

    rise_points: float = Field(10.0, gt=0, description="Alert when the percentile rank rises this many points.")
    probability: float = Field(0.25, gt=0, lt=1, description="Alert when the probability crosses this value.")
    suppress_decisions: tuple[str, ...] = Field(
        ("false_alarm", "escalated"), description="Review decisions after which a tract stays quiet ...")
    suppress_margin_points: float = Field(
        15.0, ge=0, description="... unless its percentile rank rises this many points above the decision's.")
    recipients: tuple[Recipient, ...] = Field((), description="Subscribers.")
    recipients_csv: InputPath | None = Field(None, description="CSV of more subscribers: name,email,areas,immediate.")
    areas_file: InputPath | None = Field(None, description="GeoJSON of named areas (neighborhoods, council districts).")
    areas_name_field: str = Field("name", description="Property holding an area's name in areas_file.")
    top_waterfalls: int = Field(3, ge=0, le=10, description="SHAP waterfall pictures per digest.")
    templates: RelPath | None = Field(None, description="Folder whose templates override the project's, file by file.")


class ScheduleSettings(_Section):
    """`risk schedule`: when the weekly job runs, and where the scheduler keeps its jobs."""

    cron: str = Field("0 6 * * mon", description="Crontab expression (minute hour day month day-of-week; "
                      "day-of-week as names or as cron numbers, 0 or 7 = Sunday, 1 = Monday).")
    timezone: str = Field("America/Los_Angeles", description="IANA time zone of the cron expression.")
    every_s: int | None = Field(None, ge=1, description="Run every this many seconds instead of the cron "
                                "expression (for trials and tests).")
    job_store: str | None = Field(None, description="SQLAlchemy URL of the job store (default: paths.database).")
    misfire_grace_s: int = Field(
        6 * 24 * 3600, ge=1, description="A run missed by up to this many seconds (process down) runs once at "
        "start-up; older misses are skipped.")
    lock_stale_s: int = Field(
        3600, ge=10, description="A run lock not refreshed for this long belongs to a dead process and is taken "
        "over.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        from risk.core.cron import cron_trigger

        if len(v.split()) != 5:
            raise ValueError(f"a crontab expression has 5 fields (minute hour day month day-of-week): {v!r}")
        utc = ZoneInfo("UTC")
        try:
            trigger = cron_trigger(v, utc)
        except (ValueError, IndexError) as e:
            raise ValueError(f"not a crontab expression ({e}): {v!r}") from e
        # from a fixed date, so the same file is judged the same way every day; the search covers every
        # year a trigger can reach, leap days included
        if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=utc)) is None:
            raise ValueError(f"never fires: no date matches {v!r} (day {v.split()[2]} of month {v.split()[3]})")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone: {v!r}") from e
        return v


class DaskSettings(_Section):
    """`engine: dask`: the dask.distributed cluster that builds features and trains the model."""

    scheduler_address: str | None = Field(
        None, description="Address of a running Dask scheduler (`tcp://host:8786`); empty: start a LocalCluster "
        "on this machine for the run and close it afterwards. Its workers need this package installed.")
    connect_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for the scheduler before failing.")
    n_workers: int = Field(2, ge=1, description="LocalCluster only: number of workers.")
    threads_per_worker: int = Field(1, ge=1, description="LocalCluster only: threads of each worker (LightGBM "
                                    "trains with all of them).")
    processes: bool = Field(False, description="LocalCluster only: a process per worker instead of threads of "
                            "this one. Threads start in under a second against about ten (8,500 tracts on 2 cores) "
                            "and trained as fast; LightGBM gives each thread its own network.")
    partitions: int | None = Field(None, ge=1, description="Partitions of each long source table (whole tracts "
                                   "each) and of the training rows; default: one per worker thread.")

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        import re

        if v is None or not v.strip():
            return None
        v = v.strip()
        # a host name, an IPv4 address or a bracketed IPv6 address ("tcp://[::1]:8786"), then an optional port
        if not re.fullmatch(r"([a-z]+://)?(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)(:\d{1,5})?/?", v):
            raise ValueError(f"not a scheduler address (like tcp://host:8786): {v!r}")
        return v


class WebSettings(_Section):
    """`risk serve`: the planners' review pages."""

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    secret_key_env: str = Field("RISK_WEB_SECRET", description="Environment variable holding the session "
                                "signing key (never put the key in this file).")
    session_max_age_s: int = Field(8 * 3600, ge=60, description="Seconds a login lasts.")
    secure_cookies: bool = Field(False, description="Send the session cookie over HTTPS only (set true behind "
                                 "TLS).")
    login_max_failures: int = Field(5, ge=1, description="Failed logins per user name (counted in the database, "
                                    "so parallel requests and several server processes share the count) "
                                    "answered at once; further attempts are slowed down, then refused.")
    login_max_failures_per_address: int = Field(20, ge=1, description="The same limit per client address "
                                                "(whatever the user names tried).")
    login_delay_s: float = Field(1.0, ge=0, description="Delay of the first attempt beyond a limit; it doubles "
                                 "with each further one (0 turns slowing down and refusing off).")
    login_max_delay_s: float = Field(30.0, gt=0, description="An attempt that would wait longer than this is "
                                     "refused (429) without checking its password, until login_window_s has "
                                     "passed.")
    login_window_s: int = Field(900, ge=1, description="Seconds after the last counted attempt when a name's or "
                                "address's failures are forgotten.")
    trusted_proxies: tuple[str, ...] = Field((), description="Addresses or CIDR networks of reverse proxies whose "
                                             "X-Forwarded-For header names the client (for the login limits); "
                                             "from anyone else the header is ignored. Default: none.")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="Seconds a client has to send a whole request "
                                    "line, headers and form body, from connecting or from its first byte; a "
                                    "slower one is disconnected.")
    keep_alive_s: int = Field(5, ge=1, le=300, description="Seconds an idle connection is kept open after a "
                              "response for the next request.")
    max_header_bytes: int = Field(16384, ge=1024, le=1048576, description="Most bytes of a request line and "
                                  "headers held while waiting for their end; more is answered 400 and closed.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"'{entry}' is not an IP address or CIDR network (e.g. 10.0.0.5 or "
                                 "10.0.0.0/24)") from None
        return v


class RegionEntry(RegionSettings):
    """One region of a project that covers several: its counties and its own source files.

    Features compare a tract with its own region, labels follow each region's own trend, and one model per
    outcome is trained over every region's labelled rows."""

    name: str = Field(description="Name of the region, shown in reports, e-mails and pages; unique.")
    sources: SourcesSettings = Field(description="This region's input files, one entry per family (as `sources`).")


class Settings(_Section):
    """The whole configuration."""

    region: RegionSettings = RegionSettings()
    paths: PathsSettings = PathsSettings()
    sources: SourcesSettings = Field(None, validate_default=False,  # type: ignore[assignment]
                                     description="Input files of the one region (leave out when `regions` is given).")
    regions: tuple[RegionEntry, ...] = Field(
        (), description="Several regions, each with `name`, `county_fips`, `ignore_geoids` and its own `sources`; "
        "leave `region` and `sources` out then. One region (the default) needs neither.")
    features: FeatureSettings = FeatureSettings()
    model: ModelSettings = ModelSettings()
    delivery: DeliverySettings = DeliverySettings()
    alerts: AlertSettings = AlertSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()
    engine: Literal["local", "dask"] = Field(
        "local", description="`local` builds features with pandas and trains LightGBM in this process; `dask` "
        "does both on a dask.distributed cluster (see `dask`).")
    dask: DaskSettings = DaskSettings()
    config_path: Path = Field(Path("config.yaml"), description="Where this configuration was read from.")

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.config_path.parent

    @model_validator(mode="after")
    def _one_or_several(self) -> Settings:
        if not self.regions:
            if self.sources is None:
                raise ValueError("`sources` is required (or `regions`, each with its own sources)")
            return self
        if self.sources is not None:
            raise ValueError("give `sources` inside each entry of `regions`, not at the top level as well")
        names = [r.name for r in self.regions]
        if len(set(names)) < len(names):
            raise ValueError(f"region names must be unique, got {names}")
        seen: dict[str, str] = {}
        for r in self.regions:
            for fips in r.county_fips:
                if fips in seen:
                    raise ValueError(f"county {fips} is in two regions ({seen[fips]!r} and {r.name!r}): "
                                     "a tract belongs to one region")
                seen[fips] = r.name
        # the first region stands in wherever one region's settings are read (the single-region code paths)
        return self.model_copy(update={"sources": self.regions[0].sources, "region": _plain(self.regions[0])})

    @property
    def multi_region(self) -> bool:
        """Whether the project lists several regions."""
        return len(self.regions) > 1

    def regional(self) -> tuple[Settings, ...]:
        """One settings tree per region, each with that region's ``region`` and ``sources`` (the project itself
        when it has one region)."""
        if not self.regions:
            return (self,)
        return tuple(self.model_copy(update={"region": _plain(r), "sources": r.sources, "regions": ()})
                     for r in self.regions)


def _plain(entry: RegionEntry) -> RegionSettings:
    return RegionSettings(name=entry.name, county_fips=entry.county_fips, ignore_geoids=entry.ignore_geoids)


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map every key path in the YAML text to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = (*path, str(k.value))
                lines[sub] = k.start_mark.line + 1
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[(*path, str(i))] = v.start_mark.line + 1
                walk(v, (*path, str(i)))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _expanded_size(root: yaml.Node | None) -> int:
    """How many nodes the document holds with every alias expanded, counted without expanding them
    (an alias is the same node object, so sizes are memoised per node)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # a recursive alias counts once instead of recursing forever
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            total = 1
            for child in children:
                total += size(child)
                if total > MAX_CONFIG_NODES:
                    break
            sizes[key] = total
        return sizes[key]

    return 0 if root is None else size(root)


def _suggest(loc: tuple[str, ...], model: type[BaseModel]) -> str:
    """'did you mean' for an unknown key, from the fields of the model at ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None:
            continue
        field = fields.get(part)
        if field is None:
            return ""
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else (args[0] if args else None)
    fields = getattr(current, "model_fields", {}) if current is not None else {}
    names = [f.alias or n for n, f in fields.items()]
    close = difflib.get_close_matches(loc[-1], names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _issues(err: ValidationError, lines: dict[tuple[str, ...], int]) -> list[ConfigIssue]:
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        key = ".".join(loc) or "(top level)"
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _suggest(loc, Settings)
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        out.append(ConfigIssue(key=key, message=msg, line=line))
    return out


def config_issue(settings: Settings, key: str, message: str) -> ConfigError:
    """An error a setting causes at run time (an unreachable server, say), naming its key and, where the
    file still says it, its line."""
    return config_error(settings, [(key, message)])


def config_error(settings: Settings, problems: list[tuple[str, str]]) -> ConfigError:
    """Several (key, message) problems found after loading, each with its line where the file still says it."""
    try:
        lines = _line_index(Path(settings.config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        lines = {}  # the messages name their keys; a line is a courtesy
    issues = []
    for key, message in problems:
        parts = tuple(key.split("."))
        line = next((lines[parts[:i]] for i in range(len(parts), 0, -1) if parts[:i] in lines), None)
        issues.append(ConfigIssue(key, message, line))
    return ConfigError(str(settings.config_path), issues)


def config_path_from(option: str | os.PathLike[str] | None) -> Path:
    """The config file to use: the option, else ``$RISK_CONFIG``, else ``./config.yaml``."""
    return Path(option or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a config file, reporting every problem at once."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), [ConfigIssue("(file)", f"larger than {MAX_CONFIG_BYTES:,} bytes: "
                                                      "not a configuration file")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(str(path), [ConfigIssue("(file)", "config file not found")]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), [ConfigIssue("(file)", f"cannot read: {e}")]) from e
    try:
        nodes = _expanded_size(yaml.compose(text, Loader=yaml.SafeLoader))
        if nodes > MAX_CONFIG_NODES:
            raise ConfigError(str(path), [ConfigIssue(
                "(aliases)", f"expands to more than {MAX_CONFIG_NODES:,} values through YAML aliases (*name); "
                "write the values out instead")])
        data = yaml.safe_load(text)
        lines = _line_index(text)
    except RecursionError as e:
        raise ConfigError(str(path), [ConfigIssue("(syntax)", "nested too deeply to be a configuration")]) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(str(path), [ConfigIssue("(syntax)", str(getattr(e, "problem", e)), line)]) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [ConfigIssue("(top level)", "expected a mapping of sections")])
    # sections left out are built here, through validation, so their default paths get resolved too
    data = {"paths": {}, "delivery": {}, "alerts": {}, **data, "config_path": path.resolve()}
    try:
        return Settings.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as e:
        raise ConfigError(str(path), _issues(e, lines)) from e


def describe_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every key as (dotted name, default, help), for `risk config keys`."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        if name == "config_path":
            continue
        key = f"{prefix}{field.alias or name}"
        ann = field.annotation
        sub = [a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)]
        help_text = field.description or (sub[0].__doc__ or "").strip().splitlines()[0] if sub else field.description or ""
        default = "(required)" if field.is_required() else repr(field.default)
        if sub and not getattr(ann, "__origin__", None) is tuple:
            rows.append((key, "" if field.is_required() else "", help_text))
            rows.extend(describe_keys(sub[0], key + "."))
        else:
            rows.append((key, default, help_text))
    return rows


def effective_config(settings: Settings) -> str:
    """The effective configuration as YAML, defaults filled in and paths resolved."""
    data = settings.model_dump(mode="json", by_alias=True, exclude={"config_path"})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
