"""Jepsen-style fault testing: a three-instance cluster under kills, pauses, outages and cut links.

`python -m chaos` (or `make chaos`) runs it; see docs/deployment.md, "What faults cost".
"""
