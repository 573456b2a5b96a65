"""`python -m mardini_bench.metrics {fvd,fid,psnr,ssim} REAL GENERATED [...]`."""

import sys

from mardini_bench.metrics.cli import main

if __name__ == "__main__":
    sys.exit(main())
