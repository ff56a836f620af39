"""mcdata: fetch crypto pair prices, store them, compute and show metrics."""

__version__ = "0.1.0"
