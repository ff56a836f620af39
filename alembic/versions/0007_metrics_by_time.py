"""Metric snapshots keyed by time; room in the pages of the rows the triggers rewrite (PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

crypto_pair_metrics' key was (exchange, pair, timestamp) with a second index on timestamp: each compute
inserted its 20,000 rows at 20,000 places of the key (75 ms of a 400 ms compute at that scale). Keyed by
(timestamp, exchange, pair), a snapshot is appended at the key's end, and the one key serves every
lookup of a snapshot and each pair's history (mcdata.store.metric_history walks the snapshots).

On PostgreSQL, markets and the quarter-day and daily rollups leave half of each page free (fillfactor):
every fetch rewrites a market's row and its quarter's and day's rows, all in one statement, and with
room on the page each new version stays there without an index update (HOT), so one bucket time of
every market stays in a few pages for compute's range scans instead of spreading over the table. Existing pages keep their layout
until rewritten (VACUUM FULL or CLUSTER, if wanted); new pages get the room.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# frozen: mcdata.schema.FILLFACTOR as of this revision
FILLFACTOR = {"price_rollup_quarterly": 50, "price_rollup_daily": 50, "markets": 50}


def _rekey(columns: list[str], with_time_index: bool) -> None:
    with op.batch_alter_table("crypto_pair_metrics", recreate="auto") as batch:
        if not with_time_index:
            batch.drop_index("ix_crypto_pair_metrics_timestamp")
        batch.drop_constraint("pk_crypto_pair_metrics", type_="primary")
        batch.create_primary_key("pk_crypto_pair_metrics", columns)
        if with_time_index:
            batch.create_index("ix_crypto_pair_metrics_timestamp", ["timestamp"])


def upgrade() -> None:
    _rekey(["timestamp", "exchange", "pair"], with_time_index=False)
    if op.get_bind().dialect.name == "postgresql":
        for table, fillfactor in FILLFACTOR.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    _rekey(["exchange", "pair", "timestamp"], with_time_index=True)
