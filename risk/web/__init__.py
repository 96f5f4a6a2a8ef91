"""The planners' review pages (`risk serve`): flagged tracts and the map, tracts, the model, decisions, the API."""

from risk.web.app import create_app

__all__ = ["create_app"]
