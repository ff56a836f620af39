"""Fetch planning, unit by unit: which configured pairs of a venue are fetched, skipped (and why) or failed,
decided from the venue's market list alone, before any price is asked for."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcdata.config import load_settings
from mcdata.jobs.fetching import _plan
from mcdata.jobs.ledger import Fate
from mcdata.sources.base import ListedPair


@dataclass
class Listing:
    """The part of a source the plan reads: its venue and market list (`refreshed`: the list asked again)."""

    pairs: list[ListedPair]
    refreshed: list[ListedPair] | None = None
    venue: str = "kraken"
    refreshes: list[int] = field(default_factory=list)

    def list_pairs(self) -> list[ListedPair]:
        return self.pairs

    def refresh_pairs(self) -> list[ListedPair]:
        self.refreshes.append(1)
        return self.refreshed if self.refreshed is not None else self.pairs


MARKETS = [ListedPair("btceur", "XXBTZEUR", True), ListedPair("etheur", "XETHZEUR", True),
           ListedPair("lunaeur", "LUNAEUR", False, "cancel_only"), ListedPair("dogeusd", "XDGUSD", True)]


def fates(pairs: str | None, source: Listing, one_of_several: bool = False) -> dict[str, Fate]:
    settings = load_settings({"pairs": pairs} if pairs else {}, env={}, config_file=None)
    plan = _plan(settings, source, one_of_several)  # type: ignore[arg-type]
    return {pair: fate.fate for pair, fate in plan.fates.items()}


def test_default_pairs_a_venue_does_not_list_are_skipped_not_failed() -> None:
    planned = fates(None, Listing(MARKETS))
    assert planned["btceur"] is Fate.CHOSEN and planned["dogeusd"] is Fate.CHOSEN
    assert planned["waveseur"] is Fate.NOT_LISTED  # a default pair: skipped, not counted as requested
    assert Fate.FAILED not in planned.values()


def test_named_pairs_fail_when_not_listed_and_are_skipped_when_not_trading() -> None:
    source = Listing(MARKETS)
    planned = fates("btceur,btcuer,lunaeur", source)
    assert planned == {"btceur": Fate.CHOSEN, "btcuer": Fate.FAILED, "lunaeur": Fate.FAILED}
    assert source.refreshes == [1]  # a named pair missing from a cached list: the list is asked again


def test_a_pair_the_fresh_list_has_is_chosen() -> None:
    fresh = [*MARKETS, ListedPair("soleur", "SOLEUR", True)]
    assert fates("btceur,soleur", Listing(MARKETS, refreshed=fresh))["soleur"] is Fate.CHOSEN


def test_among_several_venues_a_named_pair_is_only_skipped_here() -> None:
    """Another venue may list it: the fetch of several venues judges it once all have answered."""
    planned = fates("btceur,bnbusdt", Listing(MARKETS), one_of_several=True)
    assert planned == {"btceur": Fate.CHOSEN, "bnbusdt": Fate.NOT_LISTED}


def test_all_chooses_every_trading_market_in_order() -> None:
    source = Listing(MARKETS)
    settings = load_settings({"pairs": "all"}, env={}, config_file=None)
    plan = _plan(settings, source, False)  # type: ignore[arg-type]
    assert plan.chosen == ["btceur", "dogeusd", "etheur"]  # lunaeur is not trading
    assert plan.listed == {"btceur", "etheur", "lunaeur", "dogeusd"}  # stored others are gone from it
