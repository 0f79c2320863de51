"""Benchmarks: `python -m rmr_dist.bench NAME` (timings live here, never in tests)."""
