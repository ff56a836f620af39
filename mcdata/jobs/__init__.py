"""The jobs behind the commands, each under the writer lock and recorded as one row in `runs`:
`ledger` (the lock, the record, the Report), `fetching`, `maintain` (compute, prune, check, corrections),
`hourly` (the hourly job), `history_import` and `repair`.

Their names are loaded when first used (PEP 562): `mcdata compute` never imports the sources, the HTTP
client or the alert senders that `fetch` and `run` need (a third of a second of start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> its module (no module is named like a job: an imported submodule would hide its function)
_WHERE = {"fetch": "fetching", "list_pairs": "fetching", "Progress": "ledger", "Report": "ledger",
          "migrate": "ledger", "no_progress": "ledger", "check": "maintain", "compute": "maintain",
          "delete_metrics": "maintain", "delete_prices": "maintain", "prune": "maintain", "set_price": "maintain",
          "run": "hourly"}

if TYPE_CHECKING:
    from mcdata.jobs.fetching import fetch, list_pairs
    from mcdata.jobs.hourly import run
    from mcdata.jobs.ledger import Progress, Report, migrate, no_progress
    from mcdata.jobs.maintain import check, compute, delete_metrics, delete_prices, prune, set_price

__all__ = ["Progress", "Report", "check", "compute", "delete_metrics", "delete_prices", "fetch", "list_pairs",
           "migrate", "no_progress", "prune", "run", "set_price"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"mcdata.jobs.{_WHERE[name]}"), name)
