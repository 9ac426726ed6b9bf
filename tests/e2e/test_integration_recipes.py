"""The GitHub Actions step of docs/INTEGRATIONS.md, run as written (bash, jq, curl) with the
variables GitHub sets, against a Slack-compatible incoming webhook of a real gunicorn server:
the run's message arrives, quotes in the workflow's name and all; a refused post fails the
step."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .harness import ROOT, base_env
from .test_alertmanager import add_incoming_webhook

pytestmark = pytest.mark.e2e

GITHUB_ENV = {
    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "octo/rails",
    "GITHUB_RUN_ID": "4242", "GITHUB_RUN_NUMBER": "17", "GITHUB_REF_NAME": "main",
    "GITHUB_WORKFLOW": 'CI "nightly" & <co>', "GITHUB_SHA": "0123456789abcdef",
    "GITHUB_ACTOR": "ada",
}


def documented_step() -> dict:
    text = (ROOT / "docs" / "INTEGRATIONS.md").read_text()
    block = re.search(r"<!-- github-actions-step -->\n```yaml\n(.*?)```", text, re.S).group(1)
    [step] = yaml.safe_load(block)
    return step


def run_step(step: dict, hook: str, status: str) -> subprocess.CompletedProcess:
    env = {name: value.replace("${{ secrets.SIMPLECHAT_HOOK }}", hook)
           .replace("${{ job.status }}", status) for name, value in step["env"].items()}
    assert "${{" not in step["run"]  # nothing for GitHub to fill in the script itself
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                           step["run"]], env=base_env({**GITHUB_ENV, **env}),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")),
                    reason="jq and curl are on GitHub's runners, not here")
def test_the_github_actions_step_posts_the_run(make_stack):
    step = documented_step()
    assert step["if"] == "always()" and set(step["env"]) == {"SIMPLECHAT_HOOK", "JOB_STATUS"}
    stack = make_stack(CHAT_RATE_LIMIT="off")
    web = stack.start_web()
    stack.start_worker()
    ada, bob = stack.register(web), stack.register(web)
    conversation = ada.start_conversation(web, [bob.id], title="builds")
    hook = add_incoming_webhook(ada, web, conversation, "GitHub")
    sock = bob.socket(web)

    for status in ("success", "failure"):
        done = run_step(step, hook, status)
        assert done.returncode == 0 and done.stdout == "ok", done.stdout + done.stderr
    [passed, failed] = sock.wait_messages(2, conversation, timeout=30)
    assert passed["message"] == (
        "**octo/rails**\n\n"
        "> 🟢 **[CI \"nightly\" & <co> #17 on main: success]"
        "(<https://github.com/octo/rails/actions/runs/4242>)**\n"
        ">\n"
        "> commit 0123456 by ada")
    assert failed["message"].startswith("**octo/rails**\n\n> 🔴 **[CI")
    assert 'href="https://github.com/octo/rails/actions/runs/4242"' in passed["html"]
    assert "&lt;co&gt;" in passed["html"] and "<co>" not in passed["html"]

    # A hook deleted (or mistyped): the step fails, as a CI step should.
    refused = run_step(step, hook.replace("/api/hooks/", "/api/hooks/x"), "success")
    assert refused.returncode != 0 and "not_found" in refused.stdout + refused.stderr
