"""The model's track record in one sentence: the top tenth's rate against the others', for the model, the best
simple ranking and the UDP typology, from the figures a registered model carries."""

from __future__ import annotations

import pytest

from risk.model.track_record import lift, track_record


def _models(**recalls: float) -> dict[str, dict[str, float]]:
    return {m: {"recall_at_10pct": r} for m, r in recalls.items()}


def test_the_top_tenths_rate_over_the_others_follows_from_its_recall() -> None:
    # 100 positives in 1,000 tracts, 30 in the top 100: 30% against 70 / 900
    assert lift(0.3) == pytest.approx(0.30 / (70 / 900))
    assert lift(0.0) is None and lift(1.0) is None and lift(None) is None


def test_the_sentence_names_the_years_the_best_simple_ranking_and_the_udp_typology() -> None:
    text = track_record({"outcome": "eviction_surge", "backtest_origins": [2010, 2011, 2012, 2013],
                         "backtest": _models(lightgbm=0.30, logistic=0.29, persistence=0.20, udp_typology=0.12)})
    assert text == ("In tests on 2010-2013, the tracts this model ranked in its top tenth had 3.9 times the rate "
                    "of eviction-filing surges of the other tracts; ranking by a logistic regression on the same "
                    "indicators did about as well (3.7 times), and ranking by the UDP typology did less well "
                    "(1.2 times).")


def test_a_simple_ranking_that_did_better_is_said_to_have_done_better() -> None:
    text = track_record({"outcome": "eviction_surge", "backtest_origins": [2012],
                         "backtest": _models(lightgbm=0.20, persistence=0.30)})
    assert "In tests on 2012" in text and "each tract's own recent change did better (3.9 times)" in text


def test_a_model_never_backtested_is_called_unvalidated() -> None:
    assert track_record({"outcome": "typology_transition"}).startswith("Unvalidated:")
