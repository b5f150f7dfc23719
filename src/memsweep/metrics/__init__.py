"""Metrics: each a small pure function, tested against exact answers and independent implementations."""
