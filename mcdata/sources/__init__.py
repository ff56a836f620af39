"""Price sources, by name. Each lives in its own module: a class with the attributes of `base.Source`
and a `create(settings, now)` classmethod that builds its HTTP client (its default URL, its headers).

Adding a source is its module, its tests and one entry below; `config` takes the choices of
`--source`, their help and the venue rule from here. This module imports nothing heavy: the config of
every command reads it, and only a command that fetches imports the source it names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcdata.config import Settings
    from mcdata.sources.base import Source


@dataclass(frozen=True)
class Registered:
    implementation: str  # "module:Class"
    summary: str  # for --help
    only_venue: str | None  # the one venue the source serves; None: the venue --exchange names


SOURCES: dict[str, Registered] = {
    "kraken": Registered("mcdata.sources.kraken:KrakenSource", "Kraken's public REST API, live", "kraken"),
    "cryptowatch": Registered("mcdata.sources.cryptowatch:CryptowatchSource",
                              "the Cryptowatch API, for compatible mirrors; any --exchange", None),
    "ccxt": Registered("mcdata.sources.ccxt_source:CcxtSource",
                       "any exchange ccxt speaks, named by --exchange; the extra [ccxt]", None),
}


def make_source(settings: Settings, now: Callable[[], datetime]) -> Source:
    module, _, name = SOURCES[settings.source].implementation.partition(":")
    source: Source = getattr(importlib.import_module(module), name).create(settings, now)
    return source
