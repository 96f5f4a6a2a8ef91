"""The Urban Displacement Project typology: its rules, their noise margins, and the vintages known at a date."""
