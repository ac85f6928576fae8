"""deploy/notify_failed_runs.py against a real Prefect API (the session's test harness): it saves
the webhook block and the Failed/Crashed automation, idempotently, and refuses a bad URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "notify_failed_runs.py"


def _run(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    import prefect.settings

    env = {k: v for k, v in os.environ.items() if k != "CITYWATCH_OPS_WEBHOOK_URL"}
    env.update(PREFECT_API_URL=prefect.settings.PREFECT_API_URL.value(), **env_extra)
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_automation_notifies_the_webhook_on_failed_and_crashed_runs(prefect_harness):
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    url = "https://chat.example.org/hooks/citywatch-ops"
    first = _run({"CITYWATCH_OPS_WEBHOOK_URL": url})
    assert first.returncode == 0, first.stderr[-2000:]
    automation = Automation.read(name="citywatch-notify-failed-runs")
    assert automation.enabled and automation.trigger.posture == "Reactive"
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert automation.trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}
    [action] = automation.actions
    assert action.type == "send-notification" and "{{ flow_run.state.name }}" in action.subject
    block = CustomWebhookNotificationBlock.load("citywatch-ops-webhook")
    assert block.url == url and block.method == "POST"
    assert block._block_document_id == action.block_document_id

    again = _run({"CITYWATCH_OPS_WEBHOOK_URL": url})
    assert again.returncode == 0 and Automation.read(name="citywatch-notify-failed-runs").id == automation.id

    bad = _run({"CITYWATCH_OPS_WEBHOOK_URL": "ftp://nowhere"})
    assert bad.returncode == 2 and "is not an http(s) URL" in bad.stderr
    unset = _run({})
    assert unset.returncode == 0 and "is not set" in unset.stdout
