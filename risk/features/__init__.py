"""Point-in-time tract features: the build, the feature dictionary and spatial contiguity."""
