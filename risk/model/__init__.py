"""The model stage: LightGBM with its prior, baselines, backtest, training, registry, work cache and engines."""
