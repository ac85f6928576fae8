"""The worker: batches of frames through the detectors into incidents, and its metrics."""
