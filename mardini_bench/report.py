"""`python -m mardini_bench.report results/<sweep>`: the `python -m` form of `mardini-bench report`.

The command lives in `mardini_bench/analysis/sweep_report.py` (a different name, so neither shadows the other); this
module only forwards to its `main`.
"""

from mardini_bench.analysis.sweep_report import main

if __name__ == "__main__":
    raise SystemExit(main())
