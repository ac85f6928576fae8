"""Durable worker state: outbox and checkpoints (SQLite), run lock, camera health, shards."""
