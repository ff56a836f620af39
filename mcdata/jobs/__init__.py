"""The jobs behind the commands, each under the writer lock and recorded as one row in `runs`:
`ledger` (the lock, the record, the Report), `fetch`, `maintain` (compute, prune, check, corrections) and
`run` (the hourly job)."""

from mcdata.jobs.fetch import fetch, list_pairs
from mcdata.jobs.ledger import Progress, Report, migrate, no_progress
from mcdata.jobs.maintain import check, compute, delete_metrics, delete_prices, prune, set_price
from mcdata.jobs.run import run

__all__ = ["Progress", "Report", "check", "compute", "delete_metrics", "delete_prices", "fetch", "list_pairs",
           "migrate", "no_progress", "prune", "run", "set_price"]
