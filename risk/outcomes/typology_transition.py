"""`typology_transition`: a tract enters a UDP displacement or gentrification category.

The Urban Displacement Project typology (:func:`risk.outcomes.typology.rules.classify`) can be
computed point in time from the wide UDP database only where a new complete
vintage was released: with the configured vintages, at the release of Census
2000 (current 2000, base 1990, no recent rent change) and at the release of
ACS 2014-2018 (current 2018, base 2000, past 1990, rents from ACS 2008-2012).
Each pair of such consecutive typologies whose later one is measured from the
earlier one's current vintage is an origin: t is the earlier current vintage's
year, features are built at its release (``as_of``) and the label is known at
the release of the later current vintage (``closes``).

A tract is labelled when, at t, it was in none of the displacement or
gentrification categories (nor High Student Population / Unavailable) of UDP's
point-estimate typology, and it is positive when its *noise-aware* typology at
t+h (``classify(..., margins=...)``) is one of them (Ongoing Displacement,
Early/Ongoing Gentrification, Advanced Gentrification, Becoming Exclusive): see
:class:`TypologyTransition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from risk.core.errors import OutcomeError
from risk.core.settings import LowIncomeLossSettings, Settings
from risk.outcomes.base import Origin
from risk.outcomes.typology.rules import (
    DISPLACEMENT_OR_GENTRIFICATION,
    RISK_ORDER,
    STUDENT,
    UNAVAILABLE,
    Margins,
    classify,
    regional_median,
    vintage_year,
)
from risk.outcomes.typology.vintages import vintage_roles
from risk.sources import Sources
from risk.sources.udp_columns import UdpColumns

NOT_CLASSIFIED = frozenset({STUDENT, UNAVAILABLE})
"""Typologies that are not a statement about the neighbourhood: never labelled."""

MEDIAN_RELATIVE_SD = 0.05
"""Relative sampling error of one survey median (rent, home value, income, Zillow level)."""

SHARES = ("per_all_li", "per_nonwhite", "per_rent", "per_col", "inc80", "inc120")
"""Shares of households (the sampling universe used for their noise)."""
MOVER_SHARES = {"per_limove": "mov_tot_w_income"}
"""Shares whose universe is another count column: in-movers with income."""
MONEY = ("real_mrent", "real_mhval", "real_hinc")
"""Real medians: moved by the ratio of regional medians, relative noise."""
COUNTS = ("all_li_count",)
"""Estimated counts: moved by the ratio of regional totals, count sampling noise."""
UNIVERSES = ("hh", "mov_tot_w_income")
"""Sampling universes of the shares: moved by the ratio of regional totals, no noise (they size the
standard errors of the noise-aware typology and are not tested themselves)."""

Roles = dict[str, str | None]

@dataclass(frozen=True)
class _Step:
    """One origin: the typology roles known at ``as_of`` and those known at ``closes``."""

    origin: Origin
    at_t: Roles
    at_t_h: Roles


class TypologyTransition:
    """The tract enters a UDP displacement/gentrification category between t and t+h, beyond survey noise.

    **Label.** Eligible: the region's tracts in none of OD, EOG, AdvG, BE (nor
    Student / Unavailable) in UDP's point-estimate typology at t. Positive: in one
    of them at t+h under the *noise-aware* rules, ``classify(..., margins=...)``
    (:class:`risk.outcomes.typology.rules.Margins`), a deliberate departure from UDP, whose change
    tests trip on sampling noise alone (in the no-change world below they put
    9-11% of eligible King tracts into a category, 54-66% of the observed rate).
    With the null world's sampling model, each change must pass its threshold by z
    standard errors of the two survey estimates:

    * lost low-income households (OD, BE, gentrification outside dense areas):
      low_income_loss's test, log-change below the regional trend by
      max(-log(1 - min_loss), z SE) (its settings: z 1.96, 10%), plus an actual decline;
    * every other change, one-sided 5% (z = 1.645): college share, real income,
      home value, rent against the regional change; cost increase and rapid
      increase; the 50% / 90% rent and Zillow criteria; fewer low-income in-movers;
      a higher income. Each enters only conjunctions of such tests, while the loss
      alone makes a low-income tract OD: hence the stricter loss test;
    * UDP's map-step amendment (LISD/OD tracts passing the urban gentrification
      test shown as EOG, AdvG for 1990-2000) uses the same tests.

    Level tests (income category, vulnerability, affordability) are UDP's. The
    typology at t (eligibility, ``persistence``) stays UDP's: an eligible tract was
    outside the categories even on point estimates, a positive is inside them beyond
    noise, a clear entry (the noise-aware one at t adds 6 / 4 borderline negatives).

    Typologies come from :func:`risk.outcomes.typology.rules.classify` on the wide UDP database
    (its columns the typology reads, validated with the demographics: ``sources.udp``) with the vintages
    released by each date (:func:`risk.outcomes.typology.vintages.vintage_roles`), without UDP's spatial-lag
    and student variables (not in the database). Regional medians are taken over
    the whole database, as ``classify`` does (three counties on the shared file);
    only the tracts of ``settings.region.county_fips`` that are in the boundaries
    are labelled.

    **Null world** (:meth:`null_rate`). Nothing changes in any neighbourhood
    between t and t+h: every input of the t+h typology that comes from a vintage
    released after t is replaced by the tract's value at t moved by the regional
    change only, and then drawn with survey sampling noise:

    * shares (``per_all_li, per_nonwhite, per_rent, per_col, inc80, inc120``):
      value at t + (regional median at t+h - regional median at t);
    * real medians (``real_mrent, real_mhval, real_hinc``): value at t x (regional
      median at t+h / regional median at t), for every later vintage (the 2012
      rents too);
    * the low-income household count: value at t x the regional total's ratio;
    * the in-mover low-income share has no value at t: its first later vintage
      (2012) is kept as observed and the later one (2018) is that value plus the
      regional median change, so only the change between them is simulated;
    * the Zillow 2012->2018 change, when present: the regional median change;
    * UDP's ``lmh_flag_encoded`` (affordability from the 2013-17 rent and value
      distributions) has no value at t and is dropped, so ``classify`` uses its
      proxy from the simulated median rent / value, i.e. the tract's affordability
      at t moved with the region (with UDP's point rules, keeping the observed flag
      instead raises the null rate slightly: 0.113 against 0.105 on the bundled sample).

    Sampling noise is added to the *change* between the estimate at t and each
    later estimate, because that is what the observed label compares: for a
    value x_a at the anchor vintage a (t, or 2012 for the in-mover share) and a
    later vintage v, sim_v = (x_a - e_a) moved + e_v, with e_a drawn once per
    tract and variable (shared by all later vintages) and e_v per vintage. Per
    estimate the standard errors are

    * shares: sqrt(p (1 - p) / n_eff), n_eff = N x f / deff, N the tract's
      households at t (in-movers with income for the in-mover share), f the
      vintage's sample fraction (``low_income_loss.sample_fractions``: 1/6 for the
      decennial long form, 0.08 for ACS 5-year) and deff the design effect (1.5);
    * counts: sqrt(N (1 - f) / f x deff), N the (expected) count;
    * medians and index levels: 5% of the value (``MEDIAN_RELATIVE_SD``).

    The universes that size the share errors of the noise-aware rules (households
    ``hh``, in-movers ``mov_tot_w_income``) are moved by the regional totals'
    ratio without noise (the in-mover universe's anchor, 2012, kept as observed).
    The typology at t+h is then recomputed with exactly the label's ``classify``
    call (same margins) and the positive rate is taken among the tracts labelled
    in the observed data (the eligible set depends only on data at t and is
    unchanged). The columns of the base (t) and past vintages stay as observed,
    since both typologies read the same estimates of them; their sampling error
    enters only through e_a, in the change to the later estimates.

    Measured (seed 20240601, 20 draws, origin 2000; the check: null <= 0.25 x
    observed): bundled King sample 15 / 358, observed 0.040, null 0.0088 (0.22 x);
    shared 3-county database, King tracts labelled, 20 / 357, 0.053, null 0.0065
    (0.12 x): both pass (five other seeds: 0.18-0.21 x, 0.09-0.14 x). The null
    positives are nearly all OD: OD is barely above noise on these data. UDP's
    point rules (``noise_aware=False``) fail: 60 / 313, 0.105 against 0.161 (0.66 x);
    60 / 317, 0.086 against 0.159 (0.54 x). z = 1.96 for every test fails on the
    bundled sample (11 positives, 0.29 x); z = 1.645 for the loss too passes narrowly
    (23 / 22 positives, 0.23 x / 0.19 x).
    """

    name = "typology_transition"
    reads: tuple[str, ...] = ("demographics",)  # the UDP database's columns come with it (``sources.udp``)

    def __init__(self, settings: Settings | None = None, noise: LowIncomeLossSettings | None = None, *,
                 noise_aware: bool = True) -> None:
        """``noise``: default ``settings.model.low_income_loss``; ``noise_aware=False``: UDP's point rules at t+h."""
        self.settings = settings
        # keyed by the table's content and the date its columns were cut at: views of the same data share them
        self._typologies: dict[tuple[str, date | None, tuple[tuple[str, str | None], ...], str], pd.Series] = {}
        self._frames: dict[tuple[str, date | None], pd.DataFrame] = {}
        self.noise = noise or (settings.model.low_income_loss if settings is not None else LowIncomeLossSettings())
        # the label's sampling model is the null world's (fractions, design effect, median SE); the loss
        # test is low_income_loss's (z, min_loss); other change tests are one-sided 5% (Margins.z)
        self.margins: Margins | None = Margins(
            sample_fractions=dict(self.noise.sample_fractions), design_effect=self.noise.design_effect,
            loss_z=self.noise.z, min_loss=self.noise.min_loss, median_relative_se=MEDIAN_RELATIVE_SD,
        ) if noise_aware else None
        self.description = (
            "the tract entered a UDP displacement or gentrification category (Ongoing Displacement, "
            "Early/Ongoing Gentrification, Advanced Gentrification, Becoming Exclusive) between the typology "
            "of one complete census vintage and the next, among tracts in none of them at the origin"
            + (", every change test of the later typology beyond survey sampling error" if noise_aware else ""))

    # ------------------------------------------------------------ configuration

    def _settings(self) -> Settings:
        s = self.settings
        if s is None:
            raise OutcomeError("typology_transition needs the settings (region, low_income_loss noise model): "
                               "construct it as TypologyTransition(settings)")
        return s

    def _udp(self, sources: Sources) -> UdpColumns:
        """The UDP database's typology columns the sources hold, after checking the settings are given."""
        self._settings()
        if sources.udp is None:
            raise OutcomeError("typology_transition needs sources.demographics.format udp_database with a path "
                               "(the wide UDP database the typology is computed from)")
        return sources.udp

    def _steps(self, sources: Sources) -> list[_Step]:
        udp = self._udp(sources)
        released = udp.vintages
        known: list[Roles] = []
        for day in sorted(set(released.values())):
            roles = vintage_roles(udp, day)
            if roles is not None and (not known or roles != known[-1]):
                known.append(roles)
        steps = []
        for a, b in zip(known, known[1:]):
            if b["base"] != a["current"]:
                continue  # the later typology does not measure change since the earlier one
            t = str(a["current"])
            origin = Origin(vintage_year(t), released[t], released[str(b["current"])])
            steps.append(_Step(origin, a, b))
        return steps

    def _step(self, sources: Sources, origin: Origin) -> _Step:
        for step in self._steps(sources):
            if step.origin == origin:
                return step
        raise OutcomeError(f"typology_transition has no origin {origin}")

    def known_frame(self, sources: Sources, as_of: date) -> pd.DataFrame:
        """The UDP database's typology columns of the vintages released by ``as_of``.

        A column is dated by every vintage its name carries (``per_ch_zillow_12_18``
        needs both); ``lmh_flag_encoded`` by the 2018 vintage
        (:mod:`risk.sources.udp_columns`).
        """
        return self._udp(sources).known_at(as_of).frame

    def _region(self, sources: Sources | None, index: pd.Index) -> pd.Index:
        region = self._settings().region
        geoids = pd.Index(index.astype(str))
        inside = geoids.str[:5].isin(list(region.county_fips)) & ~geoids.isin(list(region.ignore_geoids))
        out = geoids[inside]
        if sources is not None and sources.tracts is not None and len(sources.tracts):
            out = out[out.isin(pd.Index(sources.tracts.index.astype(str)))]
        return out

    def _observed(self, udp: UdpColumns, as_of: date, roles: Roles, margins: Margins | None = None) -> pd.Series:
        """The typology from the vintages released by ``as_of`` in the given roles (cached per instance)."""
        known = udp.known_at(as_of)
        key = (known.digest, known.known_on, tuple(sorted(roles.items())), repr(margins))
        if key not in self._typologies:
            self._typologies[key] = self._classify(known.frame, roles, margins)
        return self._typologies[key]

    @staticmethod
    def _classify(db: pd.DataFrame, roles: Roles, margins: Margins | None = None) -> pd.Series:
        try:
            typ = classify(db, current=str(roles["current"]), base=str(roles["base"]), past=roles["past"],
                           rent_from=roles["rent_from"], margins=margins)
        except KeyError as e:
            raise OutcomeError(f"typology_transition: the UDP database lacks a column the typology needs: {e}") from e
        out = typ["typology"].astype(object)
        out.index = pd.Index(out.index.astype(str))
        return out

    def typology_at(self, sources: Sources, as_of: date) -> pd.Series:
        """Every tract's typology from the vintages released by ``as_of`` (whole database)."""
        udp = self._udp(sources)
        roles = vintage_roles(udp, as_of)
        if roles is None:
            raise OutcomeError(f"typology_transition: no typology can be computed at {as_of}")
        return self._observed(udp, as_of, roles).copy()

    # ------------------------------------------------------------ the Outcome protocol

    def origins(self, sources: Sources) -> list[Origin]:
        """One origin per pair of consecutive typologies, the later measured from the earlier's vintage."""
        steps = self._steps(sources)
        if not steps:
            raise OutcomeError("typology_transition needs two typologies a vintage apart (e.g. Census 2000 and "
                               "ACS 2014-2018 with 1990 before them) in the demographics vintages")
        return [s.origin for s in steps]

    def _eligible(self, sources: Sources | None, typ_t: pd.Series, typ_t_h: pd.Series) -> pd.Index:
        region = self._region(sources, typ_t.index)
        t, t_h = typ_t.reindex(region), typ_t_h.reindex(region)
        outside = ~t.isin(DISPLACEMENT_OR_GENTRIFICATION | NOT_CLASSIFIED) & t.notna()
        # a tract whose t+h typology is unavailable (too few residents at t) cannot be labelled
        return region[(outside & ~t_h.isin(NOT_CLASSIFIED) & t_h.notna()).to_numpy()]

    def label(self, sources: Sources, origin: Origin) -> pd.DataFrame:
        """Eligible tracts with ``y`` (entered the category set), ``typology_t`` and ``typology_t_h``."""
        udp = self._udp(sources)
        step = self._step(sources, origin)
        typ_t = self._observed(udp, origin.as_of, step.at_t)
        typ_t_h = self._observed(udp, origin.closes, step.at_t_h, self.margins)
        eligible = self._eligible(sources, typ_t, typ_t_h)
        out = pd.DataFrame({"typology_t": typ_t.reindex(eligible), "typology_t_h": typ_t_h.reindex(eligible)},
                           index=pd.Index(eligible, name="geoid"))
        out.insert(0, "y", out["typology_t_h"].isin(DISPLACEMENT_OR_GENTRIFICATION).astype(int))
        return out

    def no_change_world(self, sources: Sources, origin: Origin, rng: np.random.Generator) -> pd.DataFrame:
        """One draw of the database known at ``closes`` with no neighbourhood change after t (see class doc)."""
        step = self._step(sources, origin)
        roles = step.at_t_h
        known = self._udp(sources).known_at(origin.closes)
        if (known.digest, known.known_on) not in self._frames:  # the draws of one origin share it
            self._frames = {(known.digest, known.known_on): known.frame}
        db = self._frames[(known.digest, known.known_on)]
        released = known.vintages
        t = str(step.at_t["current"])
        later = sorted((v for v in released if origin.as_of < released[v] <= origin.closes),
                       key=lambda v: released[v])
        sim: dict[str, np.ndarray] = {}
        n_tracts = len(db)
        f = self.noise.sample_fractions
        deff = self.noise.design_effect

        def fraction(v: str) -> float:
            return float(f.get(v, 0.08))

        def num(col: str) -> np.ndarray:
            return pd.to_numeric(db[col], errors="coerce").to_numpy("float64")

        def sd(variance: np.ndarray) -> np.ndarray:
            return np.sqrt(np.where(np.isnan(variance), 0, variance))

        def total_ratio(x_a: np.ndarray, x_v: np.ndarray) -> float:
            both = ~np.isnan(x_a) & ~np.isnan(x_v)
            return float(x_v[both].sum() / x_a[both].sum())

        households = num(f"hh_{t}") if f"hh_{t}" in db.columns else None

        def share_sd(p: np.ndarray, n: np.ndarray | None, v: str) -> np.ndarray:
            if n is None:
                raise OutcomeError(f"typology_transition null world needs the households at t (hh_{t})")
            p = np.clip(p, 0, 1)
            return sd(p * (1 - p) / (np.maximum(n, 1) * fraction(v) / deff))

        for var in (*SHARES, *MOVER_SHARES, *MONEY, *COUNTS, *UNIVERSES):
            present = [v for v in later if f"{var}_{v}" in db.columns]
            if not present:
                continue
            anchor = t if f"{var}_{t}" in db.columns else present[0]
            x_a = num(f"{var}_{anchor}")
            targets = [v for v in present if v != anchor]
            if var in MOVER_SHARES:
                universe_col = f"{MOVER_SHARES[var]}_{anchor}"
                universe = num(universe_col) if universe_col in db.columns else households
            else:
                universe = households
            if var in MONEY:
                e_a = rng.normal(0, MEDIAN_RELATIVE_SD, n_tracts)
                for v in targets:
                    ratio = regional_median(db, f"{var}_{v}") / regional_median(db, f"{var}_{anchor}")
                    e_v = rng.normal(0, MEDIAN_RELATIVE_SD, n_tracts)
                    sim[f"{var}_{v}"] = x_a * ratio * np.clip(1 + e_v, 0.5, None) / np.clip(1 + e_a, 0.5, None)
            elif var in UNIVERSES:
                for v in targets:
                    sim[f"{var}_{v}"] = x_a * total_ratio(x_a, num(f"{var}_{v}"))
            elif var in COUNTS:
                e_a = rng.normal(0, sd(np.maximum(x_a, 0) * (1 - fraction(anchor)) / fraction(anchor) * deff))
                for v in targets:
                    expected = np.maximum(x_a - e_a, 0) * total_ratio(x_a, num(f"{var}_{v}"))
                    e_v = rng.normal(0, sd(expected * (1 - fraction(v)) / fraction(v) * deff))
                    sim[f"{var}_{v}"] = np.maximum(expected + e_v, 0)
            else:
                e_a = rng.normal(0, share_sd(x_a, universe, anchor))
                for v in targets:
                    change = regional_median(db, f"{var}_{v}") - regional_median(db, f"{var}_{anchor}")
                    e_v = rng.normal(0, share_sd(x_a, universe, v))
                    sim[f"{var}_{v}"] = np.clip(x_a - e_a + change + e_v, 0, 1)
            if anchor != t:
                sim[f"{var}_{anchor}"] = x_a  # the anchor of a change with no value at t: kept as observed
        rent_from, current = roles["rent_from"], roles["current"]
        zillow = f"per_ch_zillow_{rent_from}_{current}"
        if rent_from is not None and zillow in db.columns:
            z = num(zillow)
            start, end = (1 + rng.normal(0, MEDIAN_RELATIVE_SD, (2, n_tracts))).clip(0.5)
            sim[zillow] = np.where(np.isnan(z), np.nan, (1 + float(np.nanmedian(z))) * (end / start) - 1)
        # every other column of a later vintage (lmh_flag_encoded too: it is dated by 2018) is dropped:
        # classify must not read an unsimulated value of the outcome window
        kept = [col for col in db.columns if known.released(col) <= origin.as_of]
        return pd.concat([db[kept], pd.DataFrame(sim, index=db.index)], axis=1)

    def null_rate(self, sources: Sources, origin: Origin, rng: np.random.Generator, n: int) -> float:
        """Mean positive rate among the labelled tracts over ``n`` no-change worlds (see class doc)."""
        step = self._step(sources, origin)
        eligible = self.label(sources, origin).index
        if not len(eligible):
            return 0.0
        rates = []
        for _ in range(n):
            typ = self._classify(self.no_change_world(sources, origin, rng), step.at_t_h, self.margins)
            rates.append(float(typ.reindex(eligible).isin(DISPLACEMENT_OR_GENTRIFICATION).mean()))
        return float(np.mean(rates))

    def persistence(self, sources: Sources, origin: Origin) -> pd.Series:
        """The tract's typology at t as its RISK_ORDER rank (higher = riskier); uses only vintages known at t."""
        typ = self.typology_at(sources, origin.as_of)
        region = self._region(sources, typ.index)
        rank = typ.reindex(region).map(RISK_ORDER).astype("float64")
        rank.index.name = "geoid"
        return rank.rename("typology_rank_t")

    def mean_reversion(self, sources: Sources, origin: Origin) -> pd.Series | None:
        """None: a typology has no long-run history to revert to (two computable vintages only)."""
        return None
