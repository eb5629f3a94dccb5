"""Real processes for tests, benchmarks and ops: `bentoml serve` and the demo on free loopback ports.

May import every layer below; nothing in the package imports it.
"""
