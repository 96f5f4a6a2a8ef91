"""`python -m risk` runs the command line."""

from risk.cli.main import main

main()
