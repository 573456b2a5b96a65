from mardini_bench.cost.cli import main

main()
