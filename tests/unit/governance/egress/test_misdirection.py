"""Whether a request names one host throughout (`misdirection`), on plain names."""

from __future__ import annotations

import pytest

from tollgate.governance.egress.misdirection import Misdirected, misdirection

GOVERNED = {"api.openai.com", "api.anthropic.com"}


def governs(host: str) -> bool:
    return host in GOVERNED


@pytest.mark.parametrize(
    ("target", "server_name", "hosts"),
    [
        ("api.openai.com", "api.openai.com", ["api.openai.com"]),
        ("API.OpenAI.com.", "api.openai.com", ["Api.Openai.Com"]),  # as DNS reads them: one host
        ("api.openai.com", None, []),
        (None, "api.openai.com", ["api.openai.com"]),  # captured: no target to go by
        (None, None, ["api.openai.com"]),
        ("10.0.0.1", "example.com", ["other.example"]),  # no governed host among them
    ],
)
def test_one_host_throughout_or_none_governed_is_not_misdirected(target, server_name, hosts) -> None:
    assert misdirection(target, server_name, hosts, governs) is None


def test_the_refusal_is_the_host_headers_governed_host_first_then_the_server_names_then_the_targets() -> None:
    assert misdirection("api.openai.com", "api.anthropic.com", ["api.anthropic.com"], governs) == Misdirected(
        "api.anthropic.com",
        "connection to api.openai.com, TLS server name api.anthropic.com, Host api.anthropic.com",
    )
    assert misdirection("api.openai.com", "API.Anthropic.com", ["evil.example"], governs) == Misdirected(
        "api.anthropic.com", "connection to api.openai.com, TLS server name api.anthropic.com, Host evil.example"
    )
    assert misdirection("api.openai.com", None, ["evil.example", "evil.example"], governs) == Misdirected(
        "api.openai.com", "connection to api.openai.com, no TLS server name, Host evil.example"
    )
    assert misdirection(None, "api.openai.com", ["api.anthropic.com"], governs) == Misdirected(
        "api.anthropic.com", "TLS server name api.openai.com, Host api.anthropic.com"
    )
