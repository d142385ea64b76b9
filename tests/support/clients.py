"""Run the official SDKs as users do: a separate Python process, HTTPS_PROXY and the CA bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import faulthandler, json, sys
faulthandler.dump_traceback_later({watchdog}, exit=True)
def report(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""
# faulthandler's line when its watchdog ends a client that hung.
WATCHDOG_FIRED = "Timeout ("

EPILOGUE = """
except Exception as e:
    status = getattr(e, "status_code", None) or getattr(e, "code", None)
    response = getattr(e, "response", None)
    if isinstance(response, dict):  # botocore
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code")
    else:
        code = None
    report(error=type(e).__name__, module=type(e).__module__, status=status, code=code, message=str(e)[:2000])
"""

# A chat call and a streamed one with `prompt`, as a caller with `key`.
CHAT_THEN_STREAM = """
    from openai import OpenAI
    client = OpenAI(api_key="{key}", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=50, messages=[{{"role": "user", "content": "{prompt}"}}])
    for _ in client.chat.completions.create(model="gpt-4o", stream=True, stream_options={{"include_usage": True}},
            messages=[{{"role": "user", "content": "{prompt}"}}]):
        pass
    report(done=True)
"""

# `count` chat calls at once, each on a connection of its own.
CONCURRENT_CHATS = """
import asyncio, collections, openai
async def main():
    client = openai.AsyncOpenAI(api_key={key!r}, max_retries=0, timeout=60)
    async def one():
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hi"}}])
            return "ok"
        except openai.APIError as e:
            return type(e).__name__
    outcomes = await asyncio.gather(*(one() for _ in range({count})))
    await client.close()
    return outcomes
report(outcomes=dict(collections.Counter(asyncio.run(main()))))
"""

# The parts of a failed call's outcome in `chat_calls`, by name: each an expression of the SDK's error `e`.
ERROR_PARTS = {
    "type": "type(e).__name__",
    "status": "e.status_code",
    "error": 'e.response.headers.get("x-tollgate-error")',
    "retry_after": 'e.response.headers.get("retry-after")',
}


def chat_calls(key: str, model: str, count: int, parts: Sequence[str], first: str = "") -> str:
    """A client's code: `count` Chat Completions calls to `model` by the OpenAI SDK with the key
    `key`, after the code `first`. It reports `outcomes`: each call's 200, or the list of its
    error's `parts` (names in ERROR_PARTS)."""
    error = ", ".join(ERROR_PARTS[part] for part in parts)
    return f"""
from openai import OpenAI
client = OpenAI(api_key="{key}", max_retries=0)
{textwrap.dedent(first).strip()}
outcomes = []
for _ in range({count}):
    try:
        client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "hi"}}])
        outcomes.append(200)
    except Exception as e:
        outcomes.append([{error}])
report(outcomes=outcomes)
"""


def raw_chat(key: str, reported: str, model: str = "gpt-4o") -> str:
    """A client's code: a Chat Completions call to `model` by the OpenAI SDK with the key `key`,
    read raw. It reports the status and X-Tollgate-Attempts and `reported` (`report`'s keyword
    arguments, of `raw`, the raw response, and `answer`, the parsed one); or the error's type,
    status and X-Tollgate-Attempts."""
    return f"""
from openai import OpenAI
client = OpenAI(api_key="{key}", max_retries=0)
try:
    raw = client.chat.completions.with_raw_response.create(
        model="{model}", messages=[{{"role": "user", "content": "hi"}}])
    answer = raw.parse()
    report(status=raw.status_code, attempts=raw.headers.get("x-tollgate-attempts"), {reported})
except Exception as e:
    report(error=type(e).__name__, status=getattr(e, "status_code", None),
           attempts=e.response.headers.get("x-tollgate-attempts") if hasattr(e, "response") else None)
"""


def client_python() -> str:
    """The interpreter that has the newest official SDKs (kept apart from mitmproxy's pins)."""
    configured = os.environ.get("TOLLGATE_CLIENT_PYTHON")
    if configured:
        return configured
    venv = ROOT / ".venv-clients" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_client(code: str, proxy_url: str, bundle: Path, env: dict[str, str] | None = None, timeout: float = 60) -> dict:
    """Run `code` (which calls report(...)) through the proxy; return what it reported."""
    # A client that hangs (a library's closing handshake that waits on a socket, say) prints every
    # thread's stack and exits before the test's own time limit: what it reported still counts, and
    # where it hung is shown rather than a bare timeout.
    prelude = PRELUDE.format(watchdog=max(1.0, timeout - 5))
    script = prelude + "try:\n" + textwrap.indent(textwrap.dedent(code), "    ") + EPILOGUE
    base = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("AWS_")}
    full_env = {
        **base,
        "HTTPS_PROXY": proxy_url,
        "NO_PROXY": "",
        "SSL_CERT_FILE": str(bundle),
        "REQUESTS_CA_BUNDLE": str(bundle),
        "AWS_CA_BUNDLE": str(bundle),
        "CURL_CA_BUNDLE": str(bundle),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        **(env or {}),
    }
    done = subprocess.run(
        [client_python(), "-c", script], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if WATCHDOG_FIRED in done.stderr:
        warnings.warn(f"the client hung after {timeout - 5:g} s and was ended:\n{done.stderr[-4000:]}", stacklevel=2)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise AssertionError(f"client reported nothing (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


# A Copilot token (v2), its plan business: Copilot's Anthropic and OpenAI endpoints take it.
COPILOT_TOKEN = (
    "tid=0f1e2d3c4b5a69788796a5b4c3d2e1f0;exp=4102444800;sku=copilot_for_business_seat;"
    "proxy-ep=proxy.business.githubcopilot.com;st=dotcom;chat=1;8kp=1:5ecret-copilot-mac-q7"
)
# The anthropic SDK's clients, by where they call Claude: Anthropic's API with the caller's key,
# Copilot's with its token, Vertex AI's and Bedrock's with theirs.
ANTHROPIC_CLIENTS = {
    "anthropic": 'anthropic.Anthropic(api_key="sk-ant-own-0001", max_retries=0)',
    "copilot": f'anthropic.Anthropic(auth_token="{COPILOT_TOKEN}", base_url="https://api.business.githubcopilot.com",'
    " max_retries=0)",
    "vertex": 'anthropic.AnthropicVertex(region="us-east5", project_id="caller-proj", access_token="ya29.own-0001",'
    " max_retries=0)",
    "bedrock": 'anthropic.AnthropicBedrock(aws_access_key="AKIDEXAMPLE", aws_secret_key="s", aws_region="us-east-1",'
    " max_retries=0)",
}
