"""Prefect automation: tell the operations team when a citywatch flow run fails or crashes.

    CITYWATCH_OPS_WEBHOOK_URL=https://chat.example.org/hooks/... python deploy/notify_failed_runs.py

Creates (or updates) a custom-webhook notification block ``citywatch-ops-webhook`` that POSTs
``{"text": "<subject>\\n<body>"}`` to that URL (Slack, Mattermost, Rocket.Chat and most chat tools
take this shape), and the automation ``citywatch-notify-failed-runs``: on every
``prefect.flow-run.Failed`` or ``prefect.flow-run.Crashed`` event it sends the flow, the run, its
state and message. Idempotent: run it on every `docker compose up` (the prefect-deploy service
does). Without the variable it says so and exits 0, creating nothing.
"""

from __future__ import annotations

import os
import sys

BLOCK_NAME = "citywatch-ops-webhook"
AUTOMATION_NAME = "citywatch-notify-failed-runs"
WEBHOOK_ENV = "CITYWATCH_OPS_WEBHOOK_URL"
SUBJECT = "citywatch: flow run {{ flow_run.name }} is {{ flow_run.state.name }}"
BODY = ("Flow {{ flow.name }}, run {{ flow_run.name }} ({{ flow_run.id }}) entered "
        "{{ flow_run.state.name }}: {{ flow_run.state.message }}. A watch run that fails is re-launched "
        "by its schedule and resumes from its checkpoints; repeated failures need a look at the worker.")


def ensure_webhook_block(url: str):
    """The notification block, saved (overwritten) under :data:`BLOCK_NAME`; returns its id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(name=BLOCK_NAME, url=url, method="POST",
                                           json_data={"text": "{{subject}}\n{{body}}"})
    return block.save(BLOCK_NAME, overwrite=True)


def ensure_automation(block_id):
    """The automation under :data:`AUTOMATION_NAME` (created, or replaced when it differs)."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    wanted = Automation(
        name=AUTOMATION_NAME,
        description="Notify the operations team when a citywatch flow run fails or crashes.",
        enabled=True,
        trigger=EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                             match={"prefect.resource.id": "prefect.flow-run.*"},
                             posture=Posture.Reactive, threshold=1, within=0),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )
    try:
        current = Automation.read(name=AUTOMATION_NAME)
    except ValueError:
        return wanted.create()
    if current.trigger == wanted.trigger and current.actions == wanted.actions and current.enabled:
        return current
    current.delete()
    return wanted.create()


def main() -> int:
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        print(f"{WEBHOOK_ENV} is not set: no failed-run notification configured")
        return 0
    if not url.startswith(("http://", "https://")):
        print(f"{WEBHOOK_ENV}: {url[:60]!r} is not an http(s) URL", file=sys.stderr)
        return 2
    automation = ensure_automation(ensure_webhook_block(url))
    print(f"automation {automation.name} ({automation.id}) notifies {BLOCK_NAME} on Failed/Crashed runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
