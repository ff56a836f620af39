"""The typed rows that travel to the screen have exactly the columns of their tables."""

from __future__ import annotations

from typing import get_type_hints

from mcdata.schema import metrics, runs
from mcdata.views import SHOWN_METRIC_ORDER, MetricRow, RunRow


def test_metric_row_has_the_columns_of_the_metrics_table() -> None:
    assert set(get_type_hints(MetricRow)) == {c.name for c in metrics.columns}
    assert sorted(SHOWN_METRIC_ORDER) == sorted(c.name for c in metrics.columns)
    assert SHOWN_METRIC_ORDER[:3] == ("exchange", "pair", "timestamp")  # the key first, as CSV has always had it


def test_run_row_has_the_columns_of_the_runs_table() -> None:
    assert set(get_type_hints(RunRow)) == {c.name for c in runs.columns}
