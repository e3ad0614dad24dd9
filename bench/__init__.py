"""Benchmarks: the app against raw llama-cpp-python and raw SQLite, side by side in one run.

`python -m bench` (or `make bench`) runs every section and writes bench/results/latest.json;
docs/BENCHMARKS.md explains the method and what the numbers mean for a user.
"""
