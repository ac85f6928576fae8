"""Frames: the object-key contract, the S3 frame store, decoding, ingest and retention."""
