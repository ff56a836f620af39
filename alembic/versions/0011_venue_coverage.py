"""What a venue's answers covered: per market and interval, disjoint spans of candle open times that an
archive file, an OHLC answer or a walk of Kraken's Trades covered, so that `mcdata coverage` tells an
hour without trades (inside a span) from an hour never collected.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mcdata.schema

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SQLITE_TIME_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)


def _exact(column: str) -> str:  # a frozen copy of mcdata.schema.sqlite_time_exact as of this revision
    return (f"{column} GLOB '{SQLITE_TIME_GLOB}' AND IFNULL(strftime('%Y-%m-%d %H:%M:%S', "
            f"substr({column}, 1, 19), '+0 seconds'), '') = substr({column}, 1, 19)")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "venue_coverage",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("start_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="open time of the first interval covered"),
        sa.Column("end_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="end (exclusive) of the last interval covered"),
        sa.Column("recorded_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "pair", "interval_s", "start_at", name=op.f("pk_venue_coverage")),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_venue_coverage_span_order")),
        sa.CheckConstraint("interval_s > 0", name=op.f("ck_venue_coverage_interval_positive")),
        *([sa.CheckConstraint(_exact("start_at") + " AND " + _exact("end_at"),
                              name=op.f("ck_venue_coverage_time_format"))] if dialect == "sqlite" else []),
    )


def downgrade() -> None:
    op.drop_table("venue_coverage")
