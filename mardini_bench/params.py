"""`python -m mardini_bench.params PRESET [key=value ...]`: the entry point of the `params` command.

The code lives in `mardini_bench/cost/param_counts.py`; this module only forwards to its `main`.
"""

from mardini_bench.cost.param_counts import main

if __name__ == "__main__":
    main()
