"""What a run shows and leaves behind: the live progress, the summary and ``run.json``."""
