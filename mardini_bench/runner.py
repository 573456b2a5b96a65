"""`python -m mardini_bench.runner RUN_DIR [key=value ...]`: the `python -m` form of `mardini-bench run`.

The command lives in `mardini_bench/run/one_run.py` (a different name, so neither shadows the other); this
module only forwards to its `main`.
"""

from mardini_bench.run.one_run import main

if __name__ == "__main__":
    raise SystemExit(main())
