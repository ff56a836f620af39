"""Delisted markets, the quarantine of refused rows, and each alert state's rule definition.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

`delisted_markets` records the markets a venue's list says are gone (status shows them as delisted, not
stale). `raw_price_quarantine` holds the rows an older version stored that today's checks refuse: 0004
creates it and moves them there when it meets one; a database that passed 0004 earlier gets it here.
`alert_state.definition` is the fingerprint of the rule a state was judged for: a changed rule starts
fresh. `runs.source_url` says where a fetch asked, so that a run asking elsewhere than the runs that
stored a venue's prices (a demo's fake exchange, then the live API) says so.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import mcdata.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delisted_markets",
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("since", mcdata.schema.UTCDateTime(timezone=True), nullable=False,
                  comment="the first fetch that found it gone"),
        sa.PrimaryKeyConstraint("exchange", "pair", name=op.f("pk_delisted_markets")),
    )
    if "raw_price_quarantine" not in sa.inspect(op.get_bind()).get_table_names():
        context.script.get_revision("0004").module.create_quarantine()
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("source_url", sa.String(length=300), nullable=True,
                                   comment="where a fetch asked (password hidden): a demo's fake prices never "
                                           "pass for real ones"))
    with op.batch_alter_table("alert_state") as batch:
        batch.add_column(sa.Column("definition", sa.String(length=16), nullable=True,
                                   comment="fingerprint of the rule as defined when judged: a changed rule "
                                           "starts fresh"))


def downgrade() -> None:
    with op.batch_alter_table("alert_state") as batch:
        batch.drop_column("definition")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("source_url")
    op.drop_table("delisted_markets")  # the quarantine is 0004's
