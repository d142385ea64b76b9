"""A wire format added as a plug-in: its parts (what its package would hold, here in the test) and
one line in the registry (`formats/registry.py`, patched in). A provider that speaks it says so in
its description; an OpenAI chat call routed there goes through the `Translate` and `StreamTap`
stages as any route does: written in the new format, its usage read by the format, its answer and
errors back in OpenAI's shape, its refusals in the new format's, its conversation rolled up by the
new format's turns. Nothing outside the format and the provider knows it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from mitmproxy.test import tutils

from tollgate.calls.call import Target
from tollgate.common.config_base import ProviderConfig
from tollgate.configuration.config import Config
from tollgate.configuration.runtime import Loaded
from tollgate.credentials.keypool import KeyPool
from tollgate.formats import OPENAI_CHAT
from tollgate.formats.bodies.exact import request_model
from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.formats.chat import (
    ChatError,
    ChatFormat,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    Text,
    Untranslatable,
    kind_of_status,
)
from tollgate.formats.refusals import STATUS, Refusal
from tollgate.formats.registry import WIRE_FORMATS, wire_format
from tollgate.formats.request_facts import Classification, RequestFacts
from tollgate.formats.translation import Translation
from tollgate.formats.turns import Turns
from tollgate.formats.usage import Usage
from tollgate.formats.wire import Headers, WireFormat
from tollgate.governance.limits.rollup import Size, Summaries, plan, roll_up
from tollgate.providers import PROVIDERS
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.routing import Routing
from tollgate.providers.upstream import Upstream
from tollgate.proxy.stages.limits.summarize import conversation
from tollgate.proxy.stages.transport.translate import Translate
from tollgate.proxy.stages.upstream.stream_tap import StreamTap
from tollgate.proxy.state import Shared

from .conftest import HOSTS, api_flow, classified

# --- the format's package: its name, reading and writing, usage, errors and turns ----------------

LINE_CHAT = "line-chat"
# A call: {"model", "preamble", "lines": [{"who": "user" | "model", "say"}], "limit"}. An answer:
# {"said", "stopped": "done" | "cut", "count": {"read", "wrote"}}. An error: {"trouble": {"kind", "text"}}.
_WHO = {"user": "user", "assistant": "model"}
_ROLE = {who: role for role, who in _WHO.items()}
_STOPPED = {"done": "stop", "cut": "length"}


def _text(parts: list[Any]) -> str:
    if not all(isinstance(p, Text) for p in parts):
        raise Untranslatable("line-chat carries text only")
    return "".join(p.text for p in parts)


def read_request(body: dict[str, Any]) -> ChatRequest:
    lines = [Message(_ROLE[line["who"]], [Text(line["say"])]) for line in body["lines"]]
    preamble = [Text(body["preamble"])] if body.get("preamble") else []
    return ChatRequest(model=body.get("model"), messages=lines, system=preamble, max_tokens=body.get("limit"))


def write_request(request: ChatRequest) -> tuple[dict[str, Any], dict[str, str]]:
    if request.tools:
        raise Untranslatable("line-chat has no tools")
    body: dict[str, Any] = {
        "model": request.model,
        "lines": [{"who": _WHO[m.role], "say": _text(m.parts)} for m in request.messages],
    }
    if request.system:
        body["preamble"] = _text(list(request.system))
    if request.max_tokens is not None:
        body["limit"] = request.max_tokens
    return body, {"x-line-version": "1"}


def _usage_of(data: dict[str, Any]) -> Usage:
    count = data.get("count") or {}
    read, wrote = count.get("read"), count.get("wrote")
    total = read + wrote if read is not None and wrote is not None else None
    return Usage(input_tokens=read, output_tokens=wrote, total_tokens=total, finish_reason=data.get("stopped"))


def read_response(data: dict[str, Any]) -> ChatResponse:
    choice = Choice(0, [Text(data["said"])], _STOPPED.get(data.get("stopped", ""), "other"))
    return ChatResponse(id=None, model=None, choices=[choice], usage=_usage_of(data))


def write_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    usage = response.usage
    return {
        "said": _text(response.choices[0].parts),
        "count": {"read": usage.input_tokens, "wrote": usage.output_tokens},
    }


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    trouble = (parse_json(body) or {}).get("trouble") or {}
    return ChatError(status, kind_of_status(status), trouble.get("text") or f"HTTP {status}")


def write_error(error: ChatError) -> tuple[int, dict[str, str], bytes]:
    return (
        error.status,
        {"content-type": "application/json"},
        encode_json({"trouble": {"kind": error.kind, "text": error.message}}),
    )


def no_stream(*args: Any) -> Any:
    raise Untranslatable("line-chat does not stream")


def usage(classification: Classification, headers: Headers, body: bytes | None) -> Usage:
    data = parse_json(body)
    return _usage_of(data) if data is not None else Usage()


def refusal(reason: str, message: str) -> Refusal:
    body = json.dumps({"trouble": {"kind": reason, "text": message}}).encode()
    return Refusal(STATUS[reason], {"content-type": "application/json", "x-tollgate-error": reason}, body)


def add_preamble(body: dict[str, Any], summary: str) -> None:
    body["preamble"] = f"{body['preamble']}\n\n{summary}" if body.get("preamble") else summary


WIRE = WireFormat(
    LINE_CHAT,
    usage=usage,
    refusal=refusal,
    chat=ChatFormat(
        LINE_CHAT,
        read_request,
        write_request,
        read_response,
        write_response,
        no_stream,
        no_stream,
        read_error,
        write_error,
    ),
    turns=Turns("lines", lambda line: True, lambda line: line.get("who") == "user", add_preamble),
    conversation=lambda classification: LINE_CHAT if classification.endpoint == "chat" else None,
)


# --- a provider on it: a description, one class ------------------------------------------------


class LineHost(Provider):
    name = semconv_name = "linehost"
    host_pattern = r"api\.line\.example"
    host_globs = ("api.line.example",)
    credentials = Credentials(CallerKeys("X-Line-Key", ("authorization",)), KeyPlacement("authorization"))
    upstream = Upstream("api.line.example")
    error_format = LINE_CHAT
    routing = Routing(chat_formats={"chat": LINE_CHAT})

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg("/chat", LINE_CHAT)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        facts = RequestFacts(message_count=len(data["lines"]) if data else None, max_tokens=(data or {}).get("limit"))
        return Classification("chat", request_model(data) if data else None, facts, LINE_CHAT)


LINE = LineHost()
ASKED = {
    "model": "gpt-4o",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}],
    "max_tokens": 16,
}
ANSWER = {"said": "Hi.", "stopped": "done", "count": {"read": 9, "wrote": 2}}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's one line for the new format."""
    monkeypatch.setitem(WIRE_FORMATS, LINE_CHAT, WIRE)


def with_line_host() -> Shared:
    """A configuration whose registry holds the provider on the new format, with a key for it."""
    loaded = Loaded.build(Config())
    loaded = replace(
        loaded,
        registry={**PROVIDERS, LINE.name: LINE},
        providers={**loaded.providers, LINE.name: ProviderConfig(keys=("line-key",))},
        pools={**loaded.pools, LINE.name: KeyPool(("line-key",))},
        runtimes={**loaded.runtimes, LINE.name: None},
    )
    shared = Shared()
    shared.apply(loaded, None)
    return shared


def test_a_call_routed_to_the_new_format_goes_there_and_comes_back_in_its_callers(registered: None) -> None:
    shared = with_line_host()
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", ASKED)
    call = classified(shared, flow)
    # As a rule routing it there would (`Override`): the target, and a translation from the caller's format.
    call.route.target = Target(LINE.name, "line-1")
    call.route.translated = Translation(OPENAI_CHAT)

    Translate(shared).handle(flow, call)
    assert flow.response is None, flow.response and flow.response.content
    assert flow.request.path == "/chat"
    assert json.loads(flow.request.raw_content or b"") == {
        "model": "line-1",
        "lines": [{"who": "user", "say": "Say hi."}],
        "preamble": "Be brief.",
        "limit": 16,
    }
    assert flow.request.headers["x-line-version"] == "1"
    assert call.route.upstream_classification is not None
    assert call.route.upstream_classification.wire_format == LINE_CHAT

    flow.response = tutils.tresp(status_code=200, content=b"")
    flow.response.headers.fields = ((b"content-type", b"application/json"),)
    StreamTap(shared).responseheaders(flow)
    assert callable(flow.response.stream)
    got = b""
    for piece in (encode_json(ANSWER), b""):  # b"": the answer's end
        out = flow.response.stream(piece)
        got += out if isinstance(out, bytes) else b"".join(out)
    answer = json.loads(got)
    assert answer["choices"][0]["message"]["content"] == "Hi."
    assert answer["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    # The usage the audit keeps, read by the new format's reader through the provider.
    assert (call.answer.usage.input_tokens, call.answer.usage.output_tokens) == (9, 2)


def test_the_new_formats_errors_and_refusals(registered: None) -> None:
    translation = Translation(OPENAI_CHAT)
    translation.target = LINE.native_chat("line-1", False, OPENAI_CHAT).format
    status, _, body = translation.error(429, {}, encode_json({"trouble": {"kind": "busy", "text": "slow down"}}))
    assert (status, json.loads(body)["error"]["message"]) == (429, "slow down")  # in the caller's shape
    refused = LINE.refusal("policy_denied", "no")
    assert (refused.status, json.loads(refused.body)) == (403, {"trouble": {"kind": "policy_denied", "text": "no"}})


def test_a_conversation_in_the_new_format_is_rolled_up_by_its_turns(registered: None) -> None:
    lines = [{"who": who, "say": str(i)} for i, who in enumerate(["user", "model"] * 4)]
    body = {"model": "line-1", "lines": lines}
    classification = LINE.classify("POST", "/chat", body)
    fmt = wire_format(classification.wire_format).conversation(classification)
    assert fmt == LINE_CHAT
    rolled = plan(fmt, body, Size(above_messages=4, above_tokens=None, keep_last=2), "linehost/line-1", Summaries(8))
    assert rolled is not None
    roll_up(body, rolled, "earlier")
    assert [line["say"] for line in body["lines"]] == ["6", "7"]
    assert body["preamble"].endswith("earlier")


def test_a_format_the_registry_lacks_is_no_format(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = with_line_host()
    flow = api_flow(HOSTS["openai"], "/v1/chat/completions", ASKED)
    call = classified(shared, flow)
    call.classification = LINE.classify("POST", "/chat", {"lines": []})
    with pytest.raises(KeyError):
        conversation(call)
