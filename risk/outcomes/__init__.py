"""Outcomes and their labels: the only code allowed to look past the as-of date."""
