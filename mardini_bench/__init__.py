"""mardini_bench: benchmark and ablate MarDini-style video generators.

The package itself imports nothing, so `models/` can use its registries and configs without a cycle.
Build a model with `from mardini_bench.factory import build_model`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
