"""Who builds features and trains the production model: in this process or on a Dask cluster."""
