"""Benchmarks that print figures (`make bench`); never asserted in tests."""
