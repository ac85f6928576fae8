"""citywatch's domain: config, frame store, alert policy and payloads, publisher, outbox,
checkpoints and the command line. Never imports Prefect (flows/ wraps this package)."""
