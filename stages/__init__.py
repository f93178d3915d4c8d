"""Stage entry points, one per DVC stage: `python -m stages.<name> ARG` (see dvc.yaml)."""
