"""`python -m risk` runs the command line."""

from risk.cli import main

main()
