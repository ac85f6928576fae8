"""Incidents and what is sent about them: policy, severity, payloads, CAP, evidence, store, push."""
