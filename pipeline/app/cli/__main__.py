"""`python -m pipeline.app.cli` = `citywatch`."""

from pipeline.app.cli import main

main()
