"""Scoring the detectors on labelled footage: the run, labels, results, text and HTML reports."""
