"""From run folders to the report: collect, test, tabulate, plot.

    results.py       collect a sweep's run folders into one tidy table; summarise over seeds
    significance.py  paired bootstrap comparisons between variants (and against the baselines)
    tables.py        Markdown, LaTeX and CSV tables shaped like the paper's, its numbers beside ours
    plots.py         figures: metric vs axis, quality vs cost, training curves, sample grids
    sweep_report.py  all of the above into report.html (`python -m mardini_bench.report`)

The package imports nothing itself, so a caller loads only the stage it needs.
"""
