"""mardini_bench: benchmark and ablate MarDini-style video generators.

The package itself imports nothing, so `models/` can use its registries and configs without a cycle.
Build a model with `from mardini_bench.factory import build_model`.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "build_model":  # earlier versions re-exported it here, which tied the package to models/
        raise AttributeError("build_model lives in mardini_bench.factory: from mardini_bench.factory import build_model")
    raise AttributeError(f"module 'mardini_bench' has no attribute {name!r}")
