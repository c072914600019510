"""The VM test suite `python -m harness.bench` runs with 1 and with 2 xdist workers."""
