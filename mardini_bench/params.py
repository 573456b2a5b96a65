"""`python -m mardini_bench.params PRESET [key=value ...]`: the `python -m` form of `mardini-bench params`.

The command lives in `mardini_bench/cost/param_counts.py` (a different name, so neither shadows the other); this
module only forwards to its `main`.
"""

from mardini_bench.cost.param_counts import main

if __name__ == "__main__":
    raise SystemExit(main())
