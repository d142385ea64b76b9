"""The console at mitmdump's default detail: one line per call in Tollgate's words (client,
provider and model, decision or refusal, tokens, cost, latency), in place of mitmdump's own line,
and never a key or the prompt's text."""

from __future__ import annotations

import re

import pytest
from tests.support.configs import openai_with_clients

from tollgate.common.shown import usd_text

REAL_KEY = "sk-REAL-console-5ecret-a1"
ALICE = "tg-alice-console-5ecret-b2"
WRONG = "tg-nobody-console-5ecret-c3"
PROMPT = "PROMPT-TEXT-console-d4"
POLICY = 'package tollgate\nimport rego.v1\n\ndeny contains "gpt-4o is for research" if input.model == "gpt-4o"\n'


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "console.rego"
    policy.write_text(POLICY)
    return start_gateway(
        openai_with_clients(REAL_KEY, {"alice": ALICE}, policy={"rego": [str(policy)]}),
        providers=("openai",),
    )


CHAT = """
import openai
client = openai.OpenAI(api_key="{key}", max_retries=0)
try:
    answer = client.chat.completions.create(
        model="{model}", messages=[{{"role": "system", "content": "Be brief."}}, {{"role": "user", "content": "{prompt}"}}])
    report(text=answer.choices[0].message.content)
except openai.APIStatusError as e:
    report(status=e.status_code)
"""


STREAM = """
import openai
client = openai.OpenAI(api_key="{key}", max_retries=0)
chunks = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{{"role": "user", "content": "{prompt}"}}], stream=True,
    stream_options={{"include_usage": True}})
report(text="".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
"""


def calls_lines(console: str) -> list[str]:
    """The calls' lines, without the time mitmdump puts before each (`[01:22:35.605] `)."""
    timed = (re.fullmatch(r"\[\d\d:\d\d:\d\d\.\d{3}\] (Tollgate: .* · .*)", line) for line in console.splitlines())
    return [m.group(1) for m in timed if m is not None]


def test_each_call_has_one_line_in_tollgates_words(gw) -> None:
    assert "text" in gw.run(CHAT.format(key=ALICE, model="gpt-4o-mini", prompt=PROMPT))
    allowed = gw.last_audit()
    assert "text" in gw.run(STREAM.format(key=ALICE, prompt=PROMPT))
    streamed = gw.last_audit()
    assert (streamed["stream"], streamed["output_tokens"] is not None, streamed["cost_usd"] is not None) == (
        True, True, True
    )  # fmt: skip
    assert gw.run(CHAT.format(key=ALICE, model="gpt-4o", prompt=PROMPT)) == {"status": 403}
    denied = gw.last_audit()
    assert gw.run(CHAT.format(key=WRONG, model="gpt-4o-mini", prompt=PROMPT)) == {"status": 401}
    unknown = gw.last_audit()
    assert (allowed["cost_usd"], denied["deny_reasons"]) == (0.000006975, ["gpt-4o is for research"])
    console = gw.proxy.console()
    assert calls_lines(console) == [
        f"Tollgate: alice · 21→7 $0.000006975 · openai/gpt-4o-mini · {allowed['latency_ms']:.0f} ms",
        f"Tollgate: alice · {streamed['input_tokens']}→{streamed['output_tokens']} ${usd_text(streamed['cost_usd'])}"
        f" · openai/gpt-4o-mini · {streamed['latency_ms']:.0f} ms",
        f"Tollgate: alice · ⛔ policy_denied · openai/gpt-4o · {denied['latency_ms']:.0f} ms · gpt-4o is for research",
        f"Tollgate: (anonymous) · ⛔ unauthenticated · openai/gpt-4o-mini · {unknown['latency_ms']:.0f} ms"
        " · unknown or missing API key",
    ]
    # mitmdump's own line for the flows is left out: no upstream URL, no "(content missing)".
    assert not re.search(r"POST https?://", console)
    assert "content missing" not in console
    for secret in (REAL_KEY, ALICE, WRONG, PROMPT, "Be brief."):
        assert secret not in console


CONNECTION_LINES = re.compile(r"\] (client connect|client disconnect|server connect|server disconnect)\b")


def tollgate_lines(console: str) -> list[str]:
    """Tollgate's lines for calls and connections, without the time mitmdump puts before each."""
    timed = (re.fullmatch(r"\[\d\d:\d\d:\d\d\.\d{3}\] (Tollgate: .*)", line) for line in console.splitlines())
    return [m.group(1) for m in timed if m is not None and " · " in m.group(1)]


def refused_connect(port: int, target: str) -> str:
    """A CONNECT Tollgate refuses: the reason its 403 gives."""
    from tests.e2e.test_egress import refused

    return refused(port, target)


def test_one_line_per_call_and_per_refused_connection_and_no_connection_lines(start_gateway) -> None:
    gw = start_gateway(
        openai_with_clients(REAL_KEY, {"alice": ALICE}),
        providers=("openai",),
    )
    assert "text" in gw.run(CHAT.format(key=ALICE, model="gpt-4o-mini", prompt=PROMPT))
    allowed = gw.last_audit()
    reason = refused_connect(gw.proxy.port, "169.254.169.254:80")
    from tests.e2e.test_egress import plain_get

    assert plain_get(gw.proxy.port, "http://169.254.169.254/latest/meta-data/").startswith(b"HTTP/1.1 403")
    gw.proxy.stop()
    console = gw.proxy.output.read_text()
    assert CONNECTION_LINES.findall(console) == []
    assert tollgate_lines(console) == [
        f"Tollgate: alice · 21→7 $0.000006975 · openai/gpt-4o-mini · {allowed['latency_ms']:.0f} ms",
        f"Tollgate: (anonymous) · ⛔ egress_denied · 169.254.169.254:80 · {reason}",
        f"Tollgate: (anonymous) · ⛔ egress_denied · 169.254.169.254:80 · {reason}",  # the plain HTTP request
    ]
    # mitmdump's own lines for the refused CONNECT and request are left out too.
    assert "CONNECT" not in console and "GET " not in console and "403" not in console


def test_mitmproxys_connection_lines_at_debug_verbosity(start_gateway) -> None:
    gw = start_gateway(
        openai_with_clients(REAL_KEY, {"alice": ALICE}),
        "--set",
        "termlog_verbosity=debug",
        providers=("openai",),
    )
    assert "text" in gw.run(CHAT.format(key=ALICE, model="gpt-4o-mini", prompt=PROMPT))
    gw.proxy.stop()
    console = gw.proxy.output.read_text()
    assert {"client connect", "server connect", "client disconnect"} <= set(CONNECTION_LINES.findall(console))
    assert len([line for line in tollgate_lines(console) if "openai/gpt-4o-mini" in line]) == 1
