"""Guardrails on Gemini's answers, with google-genai through mitmdump: a streamed answer whose text
carries an AWS key split across items and whose function call's arguments carry a card number
comes to the SDK with each value replaced (`redact`), or stops before the value with an error item
google-genai raises on while iterating (`errors.ClientError`, 403), the upstream's connection closed
(`deny`); a JSON answer is served redacted or refused 403; a value in a signed part is denied even
under redact. The JSON array stream (no alt=sse) is read item by item, as it comes; Vertex AI's
Gemini and Code Assist's envelope are read alike."""

from __future__ import annotations

import json
import time
import zlib

import pytest
from tests.e2e.test_code_assist import PROJECT, TOKEN, URL, TokenInfo, envelope
from tests.e2e.test_code_assist import config as code_assist_config
from tests.e2e.test_guardrail_answers import anthropic_answer
from tests.support.answer_gateways import (
    answer_fixtures,
    answer_rules,
    cut_at_the_key,
    guarded_config,
    refused_for_the_key,
)
from tests.support.answers import AWS, CARD, FILLERS, REDACTED_TEXT, TEXT, AnswerUpstream, gemini_item, pieces
from tests.support.canned import provider_answers
from tests.support.code_assist import code_assist_run
from tests.support.fake_upstream import Received, Reply

VIRTUAL = "tg-gemini-answers-alice-0001"
SSE = {"content-type": "text/event-stream"}
ARRAY = {"content-type": "application/json; charset=UTF-8"}
REDACTED_CALLS = [{"card": "[REDACTED:pii.payment_card]", "note": "pay it"}]  # the function calls' args


def config(urls: dict[str, str]) -> dict:
    keys = {
        "gemini": "AIza-real-gemini-answers-0001",
        "vertex": "AQ.real-vertex-express-key-0001",
        "anthropic": "sk-ant-real-gemini-answers-0001",
    }
    return {
        **guarded_config(urls, keys, VIRTUAL, "gemini-deny*"),
        # A Gemini call to Claude goes in Anthropic's format; its answer comes back in Gemini's.
        "overrides": [{"match": {"provider": "gemini", "model": "claude-*"}, "provider": "anthropic"}],
    }


USAGE = {"promptTokenCount": 8, "candidatesTokenCount": 20, "totalTokenCount": 28}


def item(*parts: dict, finish: str | None = None, usage: bool = False) -> dict:
    return gemini_item(*parts, finish=finish, usage=USAGE if usage else None)


def call_part(signed: bool = False) -> dict:
    part: dict = {"functionCall": {"name": "pay", "args": {"card": CARD, "note": "pay it"}}}
    return {**part, "thoughtSignature": "c2lnbmVk"} if signed else part


def guarded_items() -> list[dict]:
    """The text in 5-character items (the key across four), then a function call whose arguments
    hold the card, then the end with the usage."""
    items = [item({"text": p}) for p in pieces(TEXT, 5)]
    return [*items, item(call_part()), item({"text": ""}, finish="STOP", usage=True)]


def sse(items: list[dict]) -> list[bytes]:
    return [b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in items]


def array(items: list[dict]) -> list[bytes]:
    """As the Gemini API writes its array: indented elements, each after a `\\r\\n,\\r\\n`."""
    texts = [json.dumps(i, indent=2).encode() for i in items]
    return [b"[" + texts[0], *(b"\r\n,\r\n" + t for t in texts[1:]), b"\r\n]"]


def clean_items() -> list[dict]:
    """No item ends in what may begin a value."""
    text = ("Nothing ", "to hide ", "here, ", "all is well ", "and fine.")
    return [*(item({"text": t}) for t in text), item({"text": ""}, finish="STOP", usage=True)]


def grounded_items() -> list[dict]:
    """A grounded answer: its text clean, the key in what the model wrote beside it (the queries it
    searched, the search chips' HTML, a segment that repeats its text, a source's title) and the
    card in a malformed call's finishMessage."""
    last = item({"text": "See the notes."}, finish="MALFORMED_FUNCTION_CALL", usage=True)
    last["candidates"][0] |= {
        "finishMessage": f"Malformed function call: pay(card='{CARD}')",
        "groundingMetadata": {
            "webSearchQueries": [f"owner of {AWS}"],
            "searchEntryPoint": {"renderedContent": f"<div class='chip'>owner of {AWS}</div>"},
            "groundingChunks": [{"web": {"uri": "https://docs.test/k", "title": f"Key {AWS}"}}],
            "groundingSupports": [
                {"segment": {"endIndex": 30, "text": f"The key {AWS}"}, "groundingChunkIndices": [0]}
            ],
        },
    }
    return [item({"text": "The key is one. "}), last]


def unreadable(chunks: list[bytes]) -> list[bytes]:
    """A gzip-encoded stream whose first two items decode, then bytes that do not."""
    encoder = zlib.compressobj(wbits=31)
    return [encoder.compress(b"".join(chunks[:2])) + encoder.flush(zlib.Z_SYNC_FLUSH), b"\xff\xff not gzip"]


class Upstream(AnswerUpstream):
    """The fake Gemini API's (and Vertex AI's) answers, by model; `gate` for the clean array's items."""

    def __call__(self, received: Received) -> Reply:
        path = received.path
        if path.endswith("/v1/messages"):
            return anthropic_answer(received.json().get("stream"))
        if ":generateContent" not in path and ":streamGenerateContent" not in path:
            return provider_answers(received)
        model = path.rpartition("/models/")[2].partition(":")[0]
        framing = sse if "alt=sse" in path else array
        headers = SSE if "alt=sse" in path else ARRAY
        if ":generateContent" in path and model == "gemini-surrogate":
            # A lone surrogate in one string, the key in the next.
            body = b'{"candidates":[{"content":{"role":"model","parts":[{"text":"a\\ud800"},{"text":"' + AWS.encode() + b'"}]},"index":0}]}'  # fmt: skip
            return Reply(200, body, headers={"content-type": "application/json"})
        if ":generateContent" in path:
            parts = [{"text": TEXT}, call_part()]
            return Reply(200, item(*parts, finish="STOP", usage=True))
        if model == "gemini-clean":
            return Reply(200, headers=headers, chunks=framing(clean_items()), gate=self.gate)
        if model == "gemini-signed":
            signed = [item({"text": "Paying now."}), item(call_part(signed=True)), item(finish="STOP")]
            return Reply(200, headers=headers, chunks=framing(signed))
        if model == "gemini-unreadable":
            return Reply(
                200, headers={**headers, "content-encoding": "gzip"}, chunks=unreadable(framing(clean_items()))
            )
        if model in ("gemini-grounded", "gemini-deny-grounded"):
            return Reply(200, headers=headers, chunks=framing(grounded_items()))
        if model == "gemini-unknown-part":
            unknown = [item({"text": "Nothing to hide. "}), item({"newThing": {"note": AWS}}, finish="STOP")]
            return Reply(200, headers=headers, chunks=framing(unknown))
        if model == "gemini-deny-stream":
            items = [item({"text": p}) for p in pieces(TEXT, 5)]
            first = TEXT.index(AWS) // 5
            items += [item({"text": " more"}) for _ in range(FILLERS)] + [item(finish="STOP", usage=True)]
            return self.denied_stream(framing(items), first, headers)
        return Reply(200, headers=headers, chunks=framing(guarded_items()))


upstream, gw = answer_fixtures(Upstream, config, ("gemini", "vertex", "anthropic"))


CLIENT = f"""
from google import genai
from google.genai import errors
client = genai.Client(api_key="{VIRTUAL}")
"""
VERTEX_CLIENT = f"""
from google import genai
from google.genai import errors
client = genai.Client(vertexai=True, api_key="{VIRTUAL}")
"""
READ_STREAM = """
text, args, error = "", [], None
try:
    for chunk in client.models.generate_content_stream(model=MODEL, contents="pay"):
        text += chunk.text or ""
        args += [dict(c.args) for c in chunk.function_calls or ()]
except errors.APIError as e:
    error = [type(e).__name__, e.code, e.status, e.message]
report(text=text, args=args, error=error)
"""
READ_JSON = """
try:
    r = client.models.generate_content(model=MODEL, contents="pay")
    report(text=r.text, args=[dict(c.args) for c in r.function_calls or ()], total=r.usage_metadata.total_token_count)
except errors.APIError as e:
    report(error=[type(e).__name__, e.code, e.status], message=e.message)
"""


def test_a_streamed_answer_comes_redacted_in_its_text_and_function_call_args(gw):
    result = gw.run(CLIENT + "MODEL = 'gemini-2.5-flash'\n" + READ_STREAM)
    assert result == {"text": REDACTED_TEXT, "args": REDACTED_CALLS, "error": None}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["error"], record["refusal"], record["total_tokens"]) == (200, None, None, 28)


def test_a_denied_stream_raises_in_the_sdk_and_the_upstream_is_closed(gw, upstream):
    started = time.monotonic()
    result = gw.run(CLIENT + "MODEL = 'gemini-deny-stream'\n" + READ_STREAM)
    message = "The answer was stopped: it carries what a guardrail denies (secrets.aws_access_key_id)."
    assert result["error"] == ["ClientError", 403, "PERMISSION_DENIED", message]
    cut_at_the_key(gw, result["text"])
    upstream.stopped_soon(started, 4 + 25)  # within half a second, on a busy machine


def test_a_value_in_a_signed_part_is_denied_under_redact(gw):
    result = gw.run(CLIENT + "MODEL = 'gemini-signed'\n" + READ_STREAM)
    message = "The answer was stopped: it carries what a guardrail denies (pii.payment_card)."
    assert result == {"text": "Paying now.", "args": [], "error": ["ClientError", 403, "PERMISSION_DENIED", message]}
    assert gw.last_audit()["answer_findings"] == {"pii.payment_card": 1}


def test_a_json_answer_is_served_redacted(gw):
    result = gw.run(CLIENT + "MODEL = 'gemini-2.5-flash'\n" + READ_JSON)
    assert result == {"text": REDACTED_TEXT, "args": REDACTED_CALLS, "total": 28}
    record = gw.last_audit()
    assert record["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    assert (record["status"], record["decision"], record["total_tokens"]) == (200, "allow", 28)


def test_a_json_answer_with_a_denied_value_is_refused_403(gw):
    result = gw.run(CLIENT + "MODEL = 'gemini-deny-json'\n" + READ_JSON)
    assert result["error"] == ["ClientError", 403, "PERMISSION_DENIED"]
    refused_for_the_key(gw, result)


def test_vertex_ais_gemini_is_read_alike(gw):
    streamed = gw.run(VERTEX_CLIENT + "MODEL = 'gemini-2.5-flash'\n" + READ_STREAM)
    assert streamed == {"text": REDACTED_TEXT, "args": REDACTED_CALLS, "error": None}
    assert gw.last_audit()["provider"] == "vertex"
    denied = gw.run(VERTEX_CLIENT + "MODEL = 'gemini-deny-stream'\n" + READ_STREAM)
    assert denied["error"][:3] == ["ClientError", 403, "PERMISSION_DENIED"]
    assert denied["text"] == TEXT[: TEXT.index(AWS)]
    whole = gw.run(VERTEX_CLIENT + "MODEL = 'gemini-deny-json'\n" + READ_JSON)
    assert whole["error"] == ["ClientError", 403, "PERMISSION_DENIED"]


def test_a_translated_answer_is_read_as_the_client_gets_it(gw):
    streamed = gw.run(CLIENT + "MODEL = 'claude-sonnet-4-5'\n" + READ_STREAM)
    assert streamed == {"text": REDACTED_TEXT, "args": [], "error": None}
    record = gw.last_audit()
    assert (record["provider"], record["answer_findings"]) == ("anthropic", {"secrets.aws_access_key_id": 1})
    whole = gw.run(CLIENT + "MODEL = 'claude-sonnet-4-5'\n" + READ_JSON)
    assert whole["text"] == REDACTED_TEXT
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}
    # Asked without alt=sse, the translated stream is a JSON array (`application/json`).
    streamed_array = raw(gw, "claude-sonnet-4-5")
    assert elements(streamed_array["body"]) == (REDACTED_TEXT, [], [])
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1}


# The JSON array (no alt=sse), read as it comes by a raw client: each element counted once whole
# (its `"responseId"`), acknowledged to the upstream's gate by a file.
RAW = f"""
import http.client, json, os, ssl, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
conn = http.client.HTTPSConnection(proxy.hostname, proxy.port,
    context=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"]))
conn.set_tunnel("generativelanguage.googleapis.com", 443)
conn.request("POST", f"/v1beta/models/{{MODEL}}:streamGenerateContent{{QUERY}}", body=b'{{"contents": []}}',
             headers={{"x-goog-api-key": "{VIRTUAL}", "content-type": "application/json"}})
response = conn.getresponse()
received = b""
while chunk := response.read1(65536):
    received += chunk
    if ACK:
        with open(ACK, "w") as f:
            f.write(str(received.count(b'"responseId"')))
report(status=response.status, body=received.decode())
"""


def raw(gw, model: str, query: str = "", ack: str = "") -> dict:
    return gw.run(f"MODEL, QUERY, ACK = {model!r}, {query!r}, {ack!r}\n" + RAW)


def elements(body: str) -> tuple[str, list, list]:
    """The array's text, function call args and errors (it must parse whole: closed)."""
    text, args, errors = "", [], []
    for element in json.loads(body):
        if "error" in element:
            errors.append(element["error"])
            continue
        for part in element["candidates"][0]["content"]["parts"]:
            text += part.get("text", "")
            if "functionCall" in part:
                args.append(part["functionCall"]["args"])
    return text, args, errors


def test_the_json_array_stream_is_redacted_and_denied_in_its_elements(gw):
    redacted = raw(gw, "gemini-2.5-flash")
    assert redacted["status"] == 200
    assert elements(redacted["body"]) == (REDACTED_TEXT, REDACTED_CALLS, [])
    record = gw.last_audit()
    assert (record["answer_findings"], record["total_tokens"]) == (
        {"secrets.aws_access_key_id": 1, "pii.payment_card": 1},
        28,
    )
    denied = raw(gw, "gemini-deny-stream")
    text, args, errors = elements(denied["body"])  # the array closed after its error element
    assert (text, args) == (TEXT[: TEXT.index(AWS)], [])
    assert [(e["code"], e["status"]) for e in errors] == [(403, "PERMISSION_DENIED")]
    assert json.loads(denied["body"])[-1] == {"error": errors[0]}
    assert gw.last_audit()["error"] == "content_denied"


def test_a_stream_that_cannot_be_read_ends_in_its_own_form(gw):
    """An encoded stream whose bytes stop decoding after two items: the items that came go on,
    then the error item, in the stream's own form: as an event google-genai raises on, or as the
    JSON array's last element with the array closed."""
    message = "The answer was stopped: it carries what a guardrail denies (unread)."
    streamed = gw.run(CLIENT + "MODEL = 'gemini-unreadable'\n" + READ_STREAM)
    assert streamed == {
        "text": "Nothing to hide ",
        "args": [],
        "error": ["ClientError", 403, "PERMISSION_DENIED", message],
    }
    assert gw.last_audit()["error"] == "content_denied"
    array = raw(gw, "gemini-unreadable")
    items = json.loads(array["body"])  # closed after its error
    assert items[:2] == clean_items()[:2]
    assert items[2:] == [{"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}]
    assert gw.last_audit()["error"] == "content_denied"


def test_a_clean_stream_comes_byte_for_byte_as_sse_and_as_an_array(gw):
    for query, framing in (("?alt=sse", sse), ("", array)):
        result = raw(gw, "gemini-clean", query)
        assert result["body"].encode() == b"".join(framing(clean_items()))
        assert gw.last_audit()["answer_findings"] == {}


def test_a_clean_arrays_elements_are_not_held_back(gw, upstream, tmp_path):
    """The upstream sends each element only once the client has the one before: a guarded
    array whose text holds no candidate passes each element on as it comes."""
    count = tmp_path / "elements"
    with upstream.paced_by(count) as pace:
        result = raw(gw, "gemini-clean", "", str(count))
    assert result["body"].encode() == b"".join(array(clean_items()))
    # Every element but the first waited for the one before; the closing `]` for the last.
    assert pace.waited == [True] * len(clean_items())


# ---------------------------------------------------------------------------------------------
# Code Assist (Gemini CLI signed in with Google): the same answers inside `{"response": …}`


def code_assist(r: Received) -> Reply:
    method = r.path.partition(":")[2].partition("?")[0]
    wrap = lambda i: {"response": i, "traceId": "t1"}  # noqa: E731
    if method == "streamGenerateContent":
        items = [wrap(i) for i in guarded_items()]
        return Reply(200, headers=SSE, chunks=sse(items))
    if method == "generateContent":
        return Reply(200, wrap(item({"text": TEXT}, call_part(), finish="STOP", usage=True)))
    return Reply(200, {})


@pytest.fixture(scope="module")
def code_assist_gw(start_gateway, upstream_ca, upstream_ca_pem):
    info = TokenInfo(upstream_ca)
    rules = answer_rules("gemini-deny*")
    gateway = start_gateway(
        lambda urls: (
            code_assist_config(urls, f"{info.fake.url}/tokeninfo", str(upstream_ca_pem)) | {"guardrails": rules}
        ),
        providers=("code_assist",),
    )
    gateway.fakes["code_assist"].handler = code_assist
    yield gateway
    info.fake.close()


def code_assist_call(gw, method: str, model: str) -> dict:
    body = envelope(model=model)
    assert body["project"] == PROJECT
    return code_assist_run(gw, method, body, URL, TOKEN)


def envelopes(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_code_assists_envelope_is_redacted_and_denied(code_assist_gw):
    gw = code_assist_gw
    streamed = code_assist_call(gw, "streamGenerateContent", "gemini-2.5-pro")
    events = envelopes(streamed["body"])
    assert all(set(e) == {"response", "traceId"} for e in events)
    parts = [p for e in events for p in e["response"]["candidates"][0]["content"]["parts"]]
    assert "".join(p.get("text", "") for p in parts) == REDACTED_TEXT
    assert [p["functionCall"]["args"] for p in parts if "functionCall" in p] == REDACTED_CALLS
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 1, "pii.payment_card": 1}
    denied = code_assist_call(gw, "streamGenerateContent", "gemini-deny-pro")
    events = envelopes(denied["body"])
    assert events[-1]["error"]["status"] == "PERMISSION_DENIED" and AWS[:4] not in denied["body"]
    assert gw.last_audit()["error"] == "content_denied"
    whole = code_assist_call(gw, "generateContent", "gemini-2.5-pro")
    answer = json.loads(whole["body"])["response"]["candidates"][0]["content"]["parts"]
    assert (whole["status"], answer[0]["text"]) == (200, REDACTED_TEXT)
    refused = code_assist_call(gw, "generateContent", "gemini-deny-pro")
    assert (refused["status"], json.loads(refused["body"])["error"]["status"]) == (403, "PERMISSION_DENIED")


READ_GROUNDED = """
dumps, error = [], None
try:
    for chunk in client.models.generate_content_stream(model=MODEL, contents="who"):
        dumps.append(chunk.model_dump(mode="json", exclude_none=True))
except errors.APIError as e:
    error = [type(e).__name__, e.code, e.status, e.message]
last = dumps[-1]["candidates"][0] if dumps else {}
report(dumps=json.dumps(dumps), error=error, finish=last.get("finish_message"),
       queries=last.get("grounding_metadata", {}).get("web_search_queries"))
"""


def test_what_the_model_writes_beside_its_text_is_read(gw):
    """A grounded answer's queries, search chips, sources and segments, and a malformed call's
    finishMessage: redacted where they are under redact; under deny the stream stops before them.
    (google-genai gives a finishMessage on Vertex AI only: it is read there.)"""
    result = gw.run(VERTEX_CLIENT + "import json\nMODEL = 'gemini-grounded'\n" + READ_GROUNDED)
    assert AWS not in result["dumps"] and CARD not in result["dumps"]
    assert result["error"] is None
    assert result["queries"] == ["owner of [REDACTED:secrets.aws_access_key_id]"]
    assert result["finish"] == "Malformed function call: pay(card='[REDACTED:pii.payment_card]')"
    assert gw.last_audit()["answer_findings"] == {"secrets.aws_access_key_id": 4, "pii.payment_card": 1}
    denied = gw.run(CLIENT + "import json\nMODEL = 'gemini-deny-grounded'\n" + READ_GROUNDED)
    assert AWS not in denied["dumps"] and CARD not in denied["dumps"]
    message = "The answer was stopped: it carries what a guardrail denies (pii.payment_card)."
    assert denied["error"] == ["ClientError", 403, "PERMISSION_DENIED", message]
    assert gw.last_audit()["error"] == "content_denied"


def test_a_part_of_a_shape_not_known_that_carries_text_stops_the_answer(gw):
    """A part whose member the guard does not know, carrying the key: the answer stops before it,
    unread, as an SSE event google-genai raises on, or as the array's last element."""
    message = "The answer was stopped: it carries what a guardrail denies (unread)."
    for query in ("?alt=sse", ""):
        result = raw(gw, "gemini-unknown-part", query)
        assert result["status"] == 200 and AWS not in result["body"]
        if query:
            assert envelopes(result["body"])[-1] == {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}  # fmt: skip
        else:
            assert json.loads(result["body"])[-1]["error"]["message"] == message
        assert gw.last_audit()["error"] == "content_denied"
    streamed = gw.run(CLIENT + "MODEL = 'gemini-unknown-part'\n" + READ_STREAM)
    assert streamed == {"text": "Nothing to hide. ", "args": [], "error": ["ClientError", 403, "PERMISSION_DENIED", message]}  # fmt: skip


def test_a_json_answer_that_cannot_be_read_is_refused(gw):
    """A lone surrogate (no text) in a JSON answer, the key after it: refused 403, never sent."""
    result = gw.run(CLIENT + "MODEL = 'gemini-surrogate'\n" + READ_JSON)
    assert result["error"] == ["ClientError", 403, "PERMISSION_DENIED"] and AWS not in json.dumps(result)
    record = gw.last_audit()
    assert (record["status"], record["decision"], record["refusal"]) == (403, "deny", "content_denied")
