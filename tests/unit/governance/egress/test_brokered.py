"""Brokered credentials (`egress.credentials`): the placeholder replaced by the token in its host's
header only, found anywhere else, and a configuration that would keep the token in the file, or
broker a governed host's credential, refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.governance.egress.brokered import Brokered, BrokeredCredential
from tollgate.governance.guardrails.rules import Guardrails

PLACEHOLDER = "ghp_placeholder_for_the_agent_0001"
TOKEN = "ghp_the_real_token_Tollgate_keeps_42"
ENV = {"GITHUB_TOKEN": TOKEN}


def entry(**changed: Any) -> dict[str, Any]:
    return {"host": "api.github.com", "header": "Authorization", "virtual": PLACEHOLDER,
            "value": "${GITHUB_TOKEN}", **changed}  # fmt: skip


def brokered(*entries: dict[str, Any]) -> Brokered:
    config = parse_config({"egress": {"credentials": list(entries or (entry(),))}}, ENV)
    return Brokered(config.egress.credentials)


def test_the_placeholder_in_its_hosts_header_becomes_the_token() -> None:
    fields = [(b"Accept", b"application/json"), (b"Authorization", f"Bearer {PLACEHOLDER}".encode())]
    result = brokered().broker("api.github.com", fields, b"/user/repos?per_page=5")
    assert (result.brokered, result.misplaced) == (1, False)
    assert result.fields == [(b"Accept", b"application/json"), (b"Authorization", f"Bearer {TOKEN}".encode())]


def test_a_request_without_the_placeholder_goes_as_it_came() -> None:
    result = brokered().broker("api.github.com", [(b"authorization", b"Bearer ghp_agents_own")], b"/")
    assert (result.fields, result.brokered, result.misplaced) == (None, 0, False)


@pytest.mark.parametrize(
    ("host", "fields", "url"),
    [
        ("api.github.com", [(b"X-Other", PLACEHOLDER.encode())], b"/"),  # another header of its host
        ("api.github.com", [], f"/search?q={PLACEHOLDER}".encode()),  # its URL
        ("uploads.example.com", [(b"Authorization", PLACEHOLDER.encode())], b"/"),  # another credential's host
    ],
)
def test_the_placeholder_anywhere_else_is_misplaced(host: str, fields: list[tuple[bytes, bytes]], url: bytes) -> None:
    both = brokered(entry(), entry(host="uploads.example.com", virtual="another_placeholder_xyz"))
    result = both.broker(host, fields, url)
    assert (result.fields, result.brokered, result.misplaced) == (None, 0, True)
    assert both.holds_placeholder(fields, url)
    assert PLACEHOLDER.encode() not in both.scrubbed(url) + b"".join(v for _, v in fields if v != PLACEHOLDER.encode())


@pytest.mark.parametrize(
    ("host", "fields", "twice"),
    [
        ("api.github.com", [(b"Authorization", b"Bearer a"), (b"authorization", b"Bearer b")], "Authorization"),
        ("uploads.example.com", [(b"X-Upload-Token", b"a"), (b"x-upload-token", b"b")], "X-Upload-Token"),
        ("uploads.example.com", [(b"X-Upload-Token", b"a"), (b"X_UPLOAD_TOKEN", b"b")], "X-Upload-Token"),
        (
            "uploads.example.com",
            [(b"Authorization", b"a"), (b"Accept", b"*/*"), (b"AUTHORIZATION", b"b")],
            "Authorization",
        ),
        (
            "api.github.com",
            [(b"Authorization", b"Bearer a"), (b"X-Upload-Token", b"a"), (b"X-Upload-Token", b"b")],
            None,  # another host's header: nothing to this one
        ),
        ("uploads.example.com", [(b"X-Upload-Token", b"a"), (b"Authorization", b"b")], None),
        ("elsewhere.example.com", [(b"Authorization", b"a"), (b"Authorization", b"b")], None),  # no credential's host
    ],
)
def test_a_header_a_credentials_host_reads_once_is_found_twice(
    host: str, fields: list[tuple[bytes, bytes]], twice: str | None
) -> None:
    both = brokered(
        entry(), entry(host="uploads.example.com", header="X-Upload-Token", virtual="another_placeholder_xyz")
    )
    assert both.repeated_header(host, fields) == twice


def test_the_hosts_are_decrypted_and_the_secrets_are_tollgates_own_keys() -> None:
    config = parse_config({"egress": {"credentials": [entry(host="API.GitHub.com.")]}}, ENV)
    assert Brokered(config.egress.credentials).allow_hosts() == [r"^api\.github\.com\.?:\d+$"]
    guardrails = Guardrails.of(config)
    for secret in (PLACEHOLDER, TOKEN):
        body = f'{{"messages": [{{"role": "user", "content": "use {secret} please"}}]}}'.encode()
        assert guardrails.scan(body, "openai", "gpt-4o", None, ()).denied_counts() == {"tollgate_keys": 1}
        tool_call = f'{{"method": "tools/call", "params": {{"arguments": {{"token": "{secret}"}}}}}}'.encode()
        assert guardrails.scan(tool_call, "mcp", None, "carol", ()).denied_counts() == {"tollgate_keys": 1}
    assert PLACEHOLDER not in repr(config) and TOKEN not in repr(config)
    assert PLACEHOLDER not in repr(Brokered(config.egress.credentials))


@pytest.mark.parametrize(
    ("credential", "said"),
    [
        (entry(value=TOKEN), "egress.credentials.0.value: write the token as ${NAME}"),
        (entry(value="Bearer ${GITHUB_TOKEN}"), "egress.credentials.0.value: write the token as ${NAME}"),
        (entry(scope="repo"), "egress.credentials.0.scope: unknown key"),
        (entry(host="api.openai.com"), "egress.credentials.0.host: api.openai.com is openai's"),
        (entry(host="*.github.com"), "egress.credentials.0.host: '*.github.com' is not a host name"),
        (entry(header="Content-Length"), "egress.credentials.0.header: Content-Length is not a credential's header"),
        (entry(virtual="short"), "egress.credentials.0.virtual: String should have at least 12 characters"),
        (entry(value="${MISSING}"), "egress.credentials.0.value: environment variable MISSING is not set"),
    ],
)
def test_bad_configuration_names_the_field(credential: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"egress": {"credentials": [credential]}}, ENV)
    assert said in str(e.value)
    assert TOKEN not in str(e.value) and PLACEHOLDER not in str(e.value)


def test_a_placeholder_stands_for_one_token_and_no_mcp_servers_host_is_brokered() -> None:
    with pytest.raises(ConfigError, match=r"egress\.credentials: entries 0 and 1 have one placeholder"):
        parse_config({"egress": {"credentials": [entry(), entry(host="other.example.com")]}}, ENV)
    mcp = {"servers": [{"name": "docs", "url": "https://mcp.example.com/mcp"}]}
    with pytest.raises(ConfigError, match=r"egress\.credentials\.0\.host: mcp\.example\.com is the MCP server's"):
        parse_config({"mcp": mcp, "egress": {"credentials": [entry(host="mcp.example.com")]}}, ENV)
    credential = BrokeredCredential(host="api.github.com", header="X-Token", virtual=PLACEHOLDER, value=TOKEN)
    assert credential.header == "x-token"


_VALUE = st.binary(max_size=40).filter(lambda b: b"\n" not in b)
_FIELDS = st.lists(st.tuples(st.sampled_from([b"accept", b"x-note", b"authorization"]), _VALUE), max_size=6)


@settings(max_examples=200, deadline=None)
@given(fields=_FIELDS, url=_VALUE, before=_VALUE, after=_VALUE)
@pytest.mark.slow
def test_only_its_own_header_ever_takes_the_token(
    fields: list[tuple[bytes, bytes]], url: bytes, before: bytes, after: bytes
) -> None:
    """Whatever else a request holds: without a placeholder it goes as it came; with its own in
    its header alone, that header gets the token and nothing else changes; a placeholder
    elsewhere is misplaced and nothing is replaced."""
    both = brokered(entry(), entry(host="uploads.example.com", virtual="another_placeholder_xyz"))
    clean = [(n, v) for n, v in fields if PLACEHOLDER.encode() not in v and b"another_placeholder_xyz" not in v]
    clean_url = url if PLACEHOLDER.encode() not in url and b"another_placeholder_xyz" not in url else b"/"
    result = both.broker("api.github.com", clean, clean_url)
    assert (result.fields, result.brokered, result.misplaced) == (None, 0, False)
    header = (b"Authorization", before + PLACEHOLDER.encode() + after)
    result = both.broker("api.github.com", [*clean, header], clean_url)
    assert result.misplaced is False and result.fields is not None
    assert result.fields[:-1] == clean
    assert result.fields[-1] == (b"Authorization", before + TOKEN.encode() + after)
    elsewhere = both.broker("uploads.example.com", [*clean, header], clean_url)
    assert (elsewhere.fields, elsewhere.brokered, elsewhere.misplaced) == (None, 0, True)
