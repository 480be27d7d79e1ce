"""What aitune-ci keeps on disk: baselines, history, run files and ``.ait`` artifacts."""
