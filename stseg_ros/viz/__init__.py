"""Pictures of the map for people who cannot run RViz."""
