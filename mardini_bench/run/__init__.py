"""One run: a config in, a run folder with `result.json` out.

    train.py        training: AdamW, EMA, the Fig. 4 stages, resumable from the folder's `last.pt`
    evaluate.py     score the trained model and the baselines on every task of `cfg.eval`
    baselines.py    training-free baselines (`BASELINES`): fill masked frames from the references
    distributed.py  process-group setup for data-parallel training (submitit, torchrun, one process)
    one_run.py      train -> evaluate -> cost -> `result.json` (`run(cfg, run_dir)`)
    long_video.py   a finished run's model makes clips longer than its window: GIF, MP4, FVD vs repeat-last
    result_file.py  `result.json`: its name and its reader (light: no torch)

The package imports nothing itself, so reading a `result.json` does not load torch.
"""
