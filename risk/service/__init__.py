"""The weekly run composed from the stages: pipeline, run history, lock, scheduler, replay, freshness."""
