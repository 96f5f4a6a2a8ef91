"""risk: displacement-risk early warning for census tracts."""

__version__ = "0.1.0"
