"""Benchmarks that print figures (`make bench`, `make load`); never asserted in tests."""
