"""`python -m mardini_bench.runner RUN_DIR [key=value ...]`: the entry point of the `run` command.

The code lives in `mardini_bench/run/one_run.py`; this module only forwards to its `main`.
"""

from mardini_bench.run.one_run import main

if __name__ == "__main__":
    main()
