"""mitmweb shows Tollgate's view: each call's summary in a comment column, refused and failed calls
marked; read through mitmweb's own web API, as its UI reads it."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.support.canned import provider_answers
from tests.support.clients import run_client
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy import ROOT, Mitmweb, free_port
from tests.support.run_sh import wait_listening

REAL_KEY = "sk-real-openai-web-0001"
ALICE = "tg-alice-web-0123456789"
UNKNOWN = "tg-unknown-web-9876543210"
MITMWEB_COLUMNS = ["tls", "icon", "path", "method", "status", "size", "time"]  # mitmweb's default


@pytest.fixture(scope="module")
def web(start_gateway):
    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {
                "openai": {"upstream": urls["openai"], "keys": [REAL_KEY]},
                "anthropic": {"upstream": f"https://127.0.0.1:{free_port()}", "keys": [REAL_KEY]},  # nothing listens
            },
            "clients": [{"name": "alice", "keys": [ALICE]}],
        }

    return start_gateway(config, tool=Mitmweb)


def openai_chat(key: str) -> str:
    return f"""
        import openai
        try:
            r = openai.OpenAI(api_key="{key}", max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
            report(status=200, text=r.choices[0].message.content)
        except openai.APIStatusError as e:
            report(status=e.status_code)
    """


def test_flow_list_shows_each_calls_summary_and_marks_refused_and_failed_calls(web):
    assert web.run(openai_chat(ALICE)) == {"status": 200, "text": "Hi there."}
    assert web.run(openai_chat(UNKNOWN)) == {"status": 401}
    failed = web.run(f"""
        import anthropic
        try:
            anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=[{{"role": "user", "content": "hi"}}])
        except anthropic.APIStatusError as e:
            report(status=e.status_code)
    """)
    assert failed == {"status": 502}
    unreachable = web.last_audit()["error"]  # the OS's words for the refused connection
    assert unreachable.startswith("upstream unreachable: ")

    flows = web.proxy.api("/flows")
    assert [(f["comment"], f["marked"], f["response"]["status_code"]) for f in flows] == [
        ("alice · 21→7 $0.000006975 · openai/gpt-4o-mini", "", 200),
        # mitmweb sends the marker's emoji
        ("(anonymous) · ⛔ unauthenticated · openai/gpt-4o-mini · unknown or missing API key", "⛔", 401),
        (f"alice · ⚠ upstream_unreachable · anthropic/claude-sonnet-4-5 · {unreachable}", "⚠", 502),
    ]
    listing = json.dumps(flows)
    for secret in (REAL_KEY, ALICE, UNKNOWN):
        assert secret not in listing


def test_flow_list_has_a_comment_column(web):
    assert web.proxy.api("/options")["web_columns"]["value"] == [*MITMWEB_COLUMNS, "comment"]


def test_columns_the_user_sets_are_kept(start_gateway):
    gateway = start_gateway(None, "--set", "web_columns=path", "--set", "web_columns=status", tool=Mitmweb)
    assert gateway.proxy.api("/options")["web_columns"]["value"] == ["path", "status"]


# --- the flow list in a real browser ------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
POLICY = 'package tollgate\n\nimport rego.v1\n\ndeny contains "gpt-4o is not for alice" if input.model == "gpt-4o"\n'


def headless(browser: str, url: str, *args: str) -> subprocess.CompletedProcess:
    """The page at `url` in headless Chromium, once its scripts have run (`args`: what to make of it)."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,480",
         "--virtual-time-budget=8000", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def test_the_flow_list_in_a_browser_shows_each_calls_outcome_first(
    tmp_path, upstream_ca, upstream_ca_pem, confdir, bundle
):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    fake = FakeUpstream(upstream_ca, provider_answers)
    (tmp_path / "policy.rego").write_text(POLICY)
    (tmp_path / "tollgate.yaml").write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": fake.url, "keys": [REAL_KEY]}},
                "clients": [{"name": "alice", "keys": [ALICE]}],
                "policy": {"rego": ["policy.rego"]},
            }
        )
    )
    port, web_port = free_port(), free_port()
    proxy = subprocess.Popen(
        [str(ROOT / "run.sh"), "web", "--listen-port", str(port), "--set", f"confdir={confdir}",
         "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca_pem}", "--set", "web_open_browser=false",
         "--set", f"web_port={web_port}", "--set", f"web_password={Mitmweb.PASSWORD}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, proxy)
        wait_listening(web_port, proxy)
        result = run_client(
            f"""
            import openai
            statuses = []
            for key, model in (("{ALICE}", "gpt-4o-mini"), ("{ALICE}", "gpt-4o"), ("{UNKNOWN}", "gpt-4o-mini")):
                try:
                    openai.OpenAI(api_key=key, max_retries=0).chat.completions.create(
                        model=model, messages=[{{"role": "user", "content": "hi"}}])
                    statuses.append(200)
                except openai.APIStatusError as e:
                    statuses.append(e.status_code)
            report(statuses=statuses)
            """,
            f"http://127.0.0.1:{port}",
            bundle,
        )
        assert result == {"statuses": [200, 403, 401]}
        page = f"http://127.0.0.1:{web_port}/?token={Mitmweb.PASSWORD}"
        dom = headless(browser, page, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        comments = [html.unescape(c) for c in re.findall(r'<td class="col-comment">([^<]*)</td>', dom.stdout)]
        assert comments == [
            "alice · 21→7 $0.000006975 · openai/gpt-4o-mini",
            "alice · ⛔ policy_denied · openai/gpt-4o · gpt-4o is not for alice",
            "(anonymous) · ⛔ unauthenticated · openai/gpt-4o-mini · unknown or missing API key",
        ]
        # The picture, for a person to look at (TOLLGATE_SCREENSHOT names where to keep it).
        picture = Path(os.environ.get("TOLLGATE_SCREENSHOT") or tmp_path / "mitmweb.png")
        shot = headless(browser, page, f"--screenshot={picture}")
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size > 10_000
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        fake.close()
