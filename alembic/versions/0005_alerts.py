"""Alerts: each rule's state per market, and the outbox of firings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

`alert_state` remembers whether a rule's condition held for a market and when it last fired (fire once,
re-arm, cool down); `alert_events` is the outbox, written in the transaction of the metrics an event is
based on and delivered after commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mcdata.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("firing", sa.Boolean(), nullable=False, comment="the condition held at the last judgement"),
        sa.Column("last_fired_at", mcdata.schema.UTCDateTime(timezone=True), nullable=True,
                  comment="as-of time of the last event"),
        sa.Column("judged_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rule", "exchange", "pair", name=op.f("pk_alert_state")),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("exchange", sa.String(length=40), nullable=False),
        sa.Column("pair", sa.String(length=40), nullable=False),
        sa.Column("as_of", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("baseline", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", mcdata.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", mcdata.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_to", sa.Text(), nullable=True,
                  comment="fingerprints of the notify URLs that took it"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_created_at"), "alert_events", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_events_created_at"), table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_state")
