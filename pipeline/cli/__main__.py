"""`python -m pipeline.cli` = `citywatch`."""

from pipeline.cli import main

main()
