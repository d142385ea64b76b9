"""Brokered credentials (`egress.credentials`): an agent holding a placeholder for a GitHub token
reaches a fake of api.github.com through Tollgate, which puts the real token in its place; the
placeholder never reaches that server, is refused toward another host and in an LLM call, and is
never in the audit or the console. Each brokered connection leaves a `connection` record.

The fake is api.github.com by name: `support/resolve.py` sends the name to it, so it sees the SNI
and Host the real one would."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.fake_upstream import FakeUpstream, Received, Reply
from tests.support.proxy import free_port, run_to_exit

RESOLVE = Path(__file__).resolve().parents[1] / "support" / "resolve.py"
PLACEHOLDER = "ghp_placeholder_the_agent_holds_0001"
TOKEN = "ghp_the_real_token_only_Tollgate_has_01"
UPLOADS_PLACEHOLDER = "upl_placeholder_the_agent_holds_0002"
UPLOADS_TOKEN = "upl_the_real_upload_token_000002"
REAL_OPENAI = "sk-real-openai-brokered-000000000001"
LOGIN = "carol:pr0xy-PASSWORD-brokered"
ANSWER = {"login": "octocat"}
POSTED = b"x" * 100_000
NAMES = ("api.github.com", "uploads.example.com")
METRICS = f"127.0.0.1:{free_port()}"


def answers(r: Received) -> Reply:
    return Reply(200, ANSWER, {"content-type": "application/json"})


@pytest.fixture(scope="module")
def github(upstream_ca) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(upstream_ca, answers, names=NAMES)
    yield fake
    fake.close()


def credentials() -> list[dict[str, str]]:
    return [
        {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER, "value": "${GITHUB_TOKEN}"},
        {"host": "uploads.example.com", "header": "X-Upload-Token", "virtual": UPLOADS_PLACEHOLDER,
         "value": "${UPLOADS_TOKEN}"},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gw(start_gateway, github, tmp_path_factory):
    saved = tmp_path_factory.mktemp("brokered-flows") / "flows.mitm"

    def config(urls: dict[str, str]) -> dict:
        return {
            "providers": {"openai": {"upstream": urls["openai"], "keys": [REAL_OPENAI]}},
            "clients": [{"name": "carol"}],
            # Default deny: a credential's host passes as a provider's does, and is not resolved.
            "egress": {"default": "deny", "credentials": credentials()},
            "metrics": {"listen": METRICS},
        }

    env = {
        "GITHUB_TOKEN": TOKEN,
        "UPLOADS_TOKEN": UPLOADS_TOKEN,
        "TOLLGATE_TEST_RESOLVE": json.dumps(dict.fromkeys(NAMES, github.port)),
    }
    gateway = start_gateway(
        config, "-s", str(RESOLVE), "--set", f"proxyauth={LOGIN}", "--set", f"save_stream_file={saved}",
        "--set", "flow_detail=4", env=env, providers=("openai",),
    )  # fmt: skip
    gateway.saved = saved
    return gateway


def written_down(gw) -> str:
    """What the proxy wrote: the audit, the console (every header, at flow_detail 4), the saved flows."""
    return gw.audit_path.read_text() + gw.proxy.console() + gw.saved.read_bytes().decode("latin-1")


def through_login(gw) -> str:
    return gw.proxy.proxy_url.replace("http://", f"http://{LOGIN}@")


AGENT = f"""
import requests
with requests.Session() as c:
    got = c.get("https://api.github.com/user", headers={{"Authorization": "Bearer {PLACEHOLDER}"}}, timeout=20)
    posted = c.post("https://api.github.com/repos/o/r/issues", headers={{"Authorization": "token {PLACEHOLDER}"}},
                    data=b"x" * {len(POSTED)}, timeout=20)
    in_url = c.get("https://api.github.com/search?q={PLACEHOLDER}", headers={{"Authorization": "Bearer {PLACEHOLDER}"}},
                   timeout=20)
    elsewhere = c.get("https://uploads.example.com/up", headers={{"Authorization": "Bearer {PLACEHOLDER}"}},
                      timeout=20)
    uploaded = c.put("https://uploads.example.com/up", headers={{"X-Upload-Token": "{UPLOADS_PLACEHOLDER}"}},
                     data=b"0123456789", timeout=20)
answers = [got, posted, in_url, elsewhere, uploaded]
report(status=[a.status_code for a in answers], error=[a.headers.get("x-tollgate-error") for a in answers],
       bodies=[a.json() for a in answers[:2]])
"""


def test_the_token_reaches_its_host_and_the_placeholder_never_does(gw, github) -> None:
    github.received.clear()
    result = gw.run(AGENT, proxy_url=through_login(gw))
    assert result == {
        "status": [200, 200, 403, 403, 200],
        "error": [None, None, "content_denied", "content_denied", None],
        "bodies": [ANSWER, ANSWER],
    }
    seen = [(r.sni, r.method, r.path, r.headers.get("authorization"), r.headers.get("x-upload-token"), len(r.body))
            for r in github.received]  # fmt: skip
    assert seen == [
        ("api.github.com", "GET", "/user", f"Bearer {TOKEN}", None, 0),
        ("api.github.com", "POST", "/repos/o/r/issues", f"token {TOKEN}", None, len(POSTED)),
        ("uploads.example.com", "PUT", "/up", None, UPLOADS_TOKEN, 10),
    ]
    assert github.received[1].body == POSTED
    for r in github.received:
        assert PLACEHOLDER not in r.path + json.dumps(r.headers)
    connections = sorted(gw.connections(2, since_run=True), key=lambda r: r["host"])
    answer = len(json.dumps(ANSWER).encode())
    assert [
        (r["client"], r["auth"], r["host"], r["port"], r["decision"], r["brokered"], r["refused"], r["bytes_sent"],
         r["bytes_received"], r["error"])
        for r in connections
    ] == [
        ("carol", "proxyauth", "api.github.com", 443, "allow", 2, 1, len(POSTED), 2 * answer, None),
        ("carol", "proxyauth", "uploads.example.com", 443, "allow", 1, 1, 10, answer, None),
    ]  # fmt: skip
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        scraped = r.read().decode()
    counted = sorted(line for line in scraped.splitlines() if line.startswith("tollgate_brokered_requests_total"))
    assert counted == [
        'tollgate_brokered_requests_total{host="api.github.com",outcome="brokered"} 2.0',
        'tollgate_brokered_requests_total{host="api.github.com",outcome="refused"} 1.0',
        'tollgate_brokered_requests_total{host="uploads.example.com",outcome="brokered"} 1.0',
        'tollgate_brokered_requests_total{host="uploads.example.com",outcome="refused"} 1.0',
    ]
    written = written_down(gw)
    assert "uploads.example.com" in written and "[redacted by Tollgate]" in written
    for secret in (PLACEHOLDER, TOKEN, UPLOADS_PLACEHOLDER, UPLOADS_TOKEN):
        assert secret not in written


LLM_CALLS = f"""
import openai
client = openai.OpenAI(api_key="sk-carols-own-unused-0000")
found = []
for content, headers in (("send {PLACEHOLDER} to the repo", {{}}), ("hello", {{"X-GitHub": "{PLACEHOLDER}"}}),
                         ("hello", {{}})):
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": content}}],
                                       extra_headers=headers)
        found.append(200)
    except openai.APIStatusError as e:
        found.append([e.status_code, e.response.headers.get("x-tollgate-error")])
report(found=found)
"""


def test_the_placeholder_in_an_llm_call_is_refused(gw) -> None:
    openai = gw.fakes["openai"]
    openai.received.clear()
    result = gw.run(LLM_CALLS, proxy_url=through_login(gw))
    assert result == {"found": [[403, "content_denied"], [403, "content_denied"], 200]}
    assert len(openai.received) == 1 and PLACEHOLDER not in json.dumps(openai.received[0].headers)
    calls = [r for r in gw.new_audit(3) if r["event"] == "llm_call"]
    assert [(r["client"], r["decision"], r["findings"]) for r in calls] == [
        ("carol", "deny", {"tollgate_keys": 1}),
        ("carol", "deny", {"tollgate_keys": 1}),
        ("carol", "allow", {}),
    ]
    written = written_down(gw)
    assert PLACEHOLDER not in written and TOKEN not in written


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"scope": "repo"}, "egress.credentials.0.scope: unknown key"),
        ({"value": TOKEN}, "egress.credentials.0.value: write the token as ${NAME}"),
        ({"host": "api.anthropic.com"}, "egress.credentials.0.host: api.anthropic.com is anthropic's"),
    ],
)
def test_bad_configuration_stops_start_up_naming_the_field(confdir, tmp_path, monkeypatch, change, said) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump({"egress": {"credentials": [{**credentials()[0], **change}]}}))
    ended = run_to_exit(confdir, path)
    assert ended.returncode == 1
    assert said in ended.stderr + ended.stdout
    assert TOKEN not in ended.stderr + ended.stdout and PLACEHOLDER not in ended.stderr + ended.stdout
