"""Thin Prefect flows and tasks over :mod:`pipeline`."""
