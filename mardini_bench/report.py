"""`python -m mardini_bench.report results/<sweep>`: the entry point of the `report` command.

The code lives in `mardini_bench/analysis/sweep_report.py`; this module only forwards to its `main`.
"""

from mardini_bench.analysis.sweep_report import main

if __name__ == "__main__":
    raise SystemExit(main())
