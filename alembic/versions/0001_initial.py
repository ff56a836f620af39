"""Initial schema: raw prices, metrics and runs.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mcdata.schema


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crypto_pair_metrics',
    sa.Column('timestamp', mcdata.schema.UTCDateTime(timezone=True), nullable=False, comment='the as-of time T'),
    sa.Column('exchange', sa.String(length=40), nullable=False),
    sa.Column('pair', sa.String(length=40), nullable=False),
    sa.Column('latest_price', sa.Double(), nullable=False),
    sa.Column('latest_at', mcdata.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('weekly_average', sa.Double(), nullable=True),
    sa.Column('min_price', sa.Double(), nullable=True),
    sa.Column('max_price', sa.Double(), nullable=True),
    sa.Column('stddev_24h', sa.Double(), nullable=True),
    sa.Column('std_rank', sa.Integer(), nullable=True),
    sa.Column('volatility_24h', sa.Double(), nullable=True),
    sa.Column('volatility_rank', sa.Integer(), nullable=True),
    sa.Column('change_24h_pct', sa.Double(), nullable=True),
    sa.Column('samples_24h', sa.Integer(), nullable=False),
    sa.Column('samples_7d', sa.Integer(), nullable=False),
    sa.Column('computed_at', mcdata.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('exchange', 'pair', 'timestamp', name=op.f('pk_crypto_pair_metrics'))
    )
    with op.batch_alter_table('crypto_pair_metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crypto_pair_metrics_timestamp'), ['timestamp'], unique=False)

    op.create_table('raw_crypto_pair_price_history',
    sa.Column('exchange', sa.String(length=40), nullable=False, comment='market venue, e.g. kraken'),
    sa.Column('pair', sa.String(length=40), nullable=False, comment='canonical lowercase base+quote, e.g. btceur'),
    sa.Column('timestamp', mcdata.schema.UTCDateTime(timezone=True), nullable=False, comment='sample time, UTC; candle close'),
    sa.Column('price', sa.Double(), nullable=False),
    sa.Column('volume', sa.Double(), nullable=True, comment='base volume of a candle; NULL for tickers'),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('fetched_at', mcdata.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('ticker', 'candle')", name=op.f('ck_raw_crypto_pair_price_history_kind')),
    sa.CheckConstraint('price > 0 AND price <= 1.7976931348623157e308', name=op.f('ck_raw_crypto_pair_price_history_price_finite_positive')),
    sa.CheckConstraint('volume IS NULL OR (volume >= 0 AND volume <= 1.7976931348623157e308)', name=op.f('ck_raw_crypto_pair_price_history_volume_finite')),
    sa.PrimaryKeyConstraint('exchange', 'pair', 'timestamp', name=op.f('pk_raw_crypto_pair_price_history'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('command', sa.String(length=16), nullable=False, comment='fetch | compute | run'),
    sa.Column('started_at', mcdata.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', mcdata.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False, comment='running | ok | partial | failed'),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=True),
    sa.Column('as_of', mcdata.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('pairs_requested', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pairs_stored', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pairs_failed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rows_written', sa.Integer(), server_default='0', nullable=False),
    sa.Column('http_requests', sa.Integer(), server_default='0', nullable=False),
    sa.Column('error_summary', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'ok', 'partial', 'failed')", name=op.f('ck_runs_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_started_at'), ['started_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_started_at'))

    op.drop_table('runs')
    op.drop_table('raw_crypto_pair_price_history')
    with op.batch_alter_table('crypto_pair_metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crypto_pair_metrics_timestamp'))

    op.drop_table('crypto_pair_metrics')
