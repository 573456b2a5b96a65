"""`python -m mardini_bench.cost {table3,memory} ...`."""

import sys

from mardini_bench.cost.cli import main

if __name__ == "__main__":
    sys.exit(main())
