"""mardini_bench: benchmark and ablate MarDini-style video generators.

`build_model` is imported lazily so that `models/` can import the registries from this package
without a cycle.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["build_model", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from mardini_bench.factory import build_model

        return build_model
    raise AttributeError(f"module 'mardini_bench' has no attribute {name!r}")
