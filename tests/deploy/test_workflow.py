"""The CI workflow as GitHub reads it: which runs a newer one may cancel, and that a deploy,
once started, always runs to the end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(".github/workflows/python-ci.yml")
# The one expression form the workflow's concurrency settings use.
EVENT_IS = re.compile(r"\$\{\{\s*github\.event_name\s*==\s*'(\w+)'\s*\}\}")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def cancels(setting: object, event: str) -> bool:
    """`cancel-in-progress` as GitHub evaluates it for a run triggered by `event`."""
    if isinstance(setting, bool):
        return setting
    match = EVENT_IS.fullmatch(str(setting).strip())
    assert match, f"cancel-in-progress {setting!r}: a form this test cannot evaluate"
    return match.group(1) == event


def test_a_newer_pull_request_push_cancels_the_older_run(workflow: dict[str, Any]):
    assert cancels(workflow["concurrency"]["cancel-in-progress"], "pull_request")


def test_runs_on_main_queue_instead_of_cancelling(workflow: dict[str, Any]):
    """A push to main must not cancel the run before it, whose deploy may be under way."""
    concurrency = workflow["concurrency"]
    assert "github.ref" in concurrency["group"]  # one queue per branch / pull request
    assert not cancels(concurrency["cancel-in-progress"], "push")


def test_the_deploy_runs_only_for_main_and_is_never_cancelled(workflow: dict[str, Any]):
    deploy = workflow["jobs"]["deploy"]
    assert "github.event_name == 'push'" in deploy["if"]
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "${{" not in deploy["concurrency"]["group"]  # one group for every deploy
