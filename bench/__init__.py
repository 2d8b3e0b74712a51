"""Benchmarks of the live channels: idle cost, fan-out, score streams, against a baseline server.

`make bench` runs `python -m bench.run`; docs/performance.md explains each figure.
"""
