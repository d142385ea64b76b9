"""What google-genai, the official SDK, makes of the Gemini answers Tollgate writes when it
translates another provider's: it reads the written chunks, and sends a sealed thought signature
back as Tollgate can read it. The SDK runs in the client venv, in a process of its own (end to end
by its nature, kept out of the unit tier, which needs no SDK)."""

from __future__ import annotations

import json
import subprocess

import pytest
from tests.support.clients import client_python
from tests.unit.formats.translate.test_gemini_generate import (
    CLAUDE_SIGNATURE,
    STREAM_EVENTS,
    THEIRS,
    G,
    _write_all,
    answers,
)

from tollgate.formats.chat import ToolCall, seal

GENAI_READS = """
import json, sys
from google.genai import types
chunks = [types.GenerateContentResponse.model_validate(json.loads(b.removeprefix("data: ")))
          for b in sys.stdin.read().split("\\r\\n\\r\\n") if b]
calls = [[f.name, f.args, f.id] for c in chunks for f in c.function_calls or []]
print(json.dumps(["".join(c.text or "" for c in chunks), calls, chunks[-1].usage_metadata.total_token_count]))
"""


# Both scripts run in one process of the client venv, each with its standard input and output:
# importing google-genai is most of a process's time. What they printed is all: os._exit spares the
# interpreter's teardown, which collects every object google-genai made (a second).
GENAI_RUNS = """
import contextlib, io, json, os, sys
printed = {}
for name, (script, given) in json.loads(sys.stdin.read()).items():
    sys.stdin = io.StringIO(given)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(script, {"__name__": "__main__"})
    printed[name] = out.getvalue()
print(json.dumps(printed), flush=True)
os._exit(0)
"""


@pytest.fixture(scope="module")
def genai_printed() -> dict[str, str]:
    """What GENAI_READS and GENAI_CHATS printed, given the chunks and the answers below."""
    runs = {"reads": (GENAI_READS, _write_all(STREAM_EVENTS).decode()), "chats": (GENAI_CHATS, json.dumps(answers()))}
    done = subprocess.run(
        [client_python(), "-c", GENAI_RUNS], input=json.dumps(runs), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_google_genai_reads_the_written_chunks(genai_printed: dict[str, str]) -> None:
    """google-genai lives with the other SDKs, apart from mitmproxy's pins: it reads in its own Python."""
    text, calls, total = json.loads(genai_printed["reads"])
    assert text == "Hello world"  # each chunk holds one candidate but the last
    assert calls == [["get_weather", {"city": "Paris"}, "call_a"], ["get_time", {}, "call_b"]]
    assert total == 30


GENAI_CHATS = """
import json, sys
try:
    import httpx2 as httpx  # what google-genai uses where it is installed
except ImportError:
    import httpx
from google import genai
from google.genai import types
answers, sent = json.loads(sys.stdin.read()), []
def upstream(request):
    sent.append(json.loads(request.content))
    streamed = "streamGenerateContent" in request.url.path
    kind = "text/event-stream" if streamed else "application/json"
    return httpx.Response(200, content=answers[streamed], headers={"content-type": kind})
http = httpx.Client(transport=httpx.MockTransport(upstream))
client = genai.Client(api_key="k", http_options=types.HttpOptions(httpx_client=http))
result = types.Part.from_function_response(name="get_weather", response={"result": "18C"})
chat = client.chats.create(model="gemini-3-pro-preview")
chat.send_message("Weather in Paris?")
chat.send_message(result)
streamed = client.chats.create(model="gemini-3-pro-preview")
list(streamed.send_message_stream("Weather in Paris?"))
list(streamed.send_message_stream(result))
print(json.dumps([sent[1], sent[3]]))
"""


def test_a_sealed_signature_survives_google_genai(genai_printed: dict[str, str]) -> None:
    """google-genai keeps a thoughtSignature as bytes and sends them back in URL-safe base64; its
    chats keep a streamed answer as one content per chunk."""
    url_safe = seal(CLAUDE_SIGNATURE, "anthropic-messages").replace("+", "-").replace("/", "_")
    for sent in json.loads(genai_printed["chats"]):
        signatures = [p["thoughtSignature"] for c in sent["contents"] for p in c["parts"] if "thoughtSignature" in p]
        assert signatures == [url_safe]
        assistant = G.read_request(sent).messages[1]
        assert assistant.parts[:2] == [THEIRS, ToolCall("call_9", "get_weather", '{"city":"Paris"}')]
