"""The `risk` command line: one module per command group, registered explicitly in :mod:`risk.cli.main.main`."""
