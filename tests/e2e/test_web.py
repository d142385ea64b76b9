"""mitmweb shows Tollgate's view: each call's summary in a comment column, refused and failed calls
marked; read through mitmweb's own web API, as its UI reads it."""

from __future__ import annotations

import json

import pytest
from tests.support.proxy import Mitmweb, free_port

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
        ("alice · openai/gpt-4o-mini · 21→7 tokens · $0.000007 · allow", "", 200),
        ("anonymous · openai/gpt-4o-mini · ? tokens · deny", "⛔", 401),  # mitmweb sends the marker's emoji
        (f"alice · anthropic/claude-sonnet-4-5 · ? tokens · allow · {unreachable}", "⚠", 502),
    ]
    listing = json.dumps(flows)
    for secret in (REAL_KEY, ALICE, UNKNOWN):
        assert secret not in listing


def test_flow_list_has_a_comment_column(web):
    assert web.proxy.api("/options")["web_columns"]["value"] == [*MITMWEB_COLUMNS, "comment"]


def test_columns_the_user_sets_are_kept(start_gateway):
    gateway = start_gateway(None, "--set", "web_columns=path", "--set", "web_columns=status", tool=Mitmweb)
    assert gateway.proxy.api("/options")["web_columns"]["value"] == ["path", "status"]
