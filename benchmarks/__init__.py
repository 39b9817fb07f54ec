"""Performance measurements (not tests): run with ``make bench`` / ``python -m benchmarks.run``."""
