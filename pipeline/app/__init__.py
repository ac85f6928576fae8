"""What users run: the CLI, console, demo, bench, evaluation and training tools (may import flows)."""
