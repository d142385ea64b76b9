"""Guardrails on documents, with the official SDKs through mitmdump: a text document inline (an
OpenAI chat `file` part, a Responses `input_file`, an Anthropic `document`, a Gemini inline part, a
Converse `document`) is decoded and read, reaches the fake upstream redacted inside its base64, or
is refused; what Tollgate cannot read (a PDF, an image, a file by id or URL, a batch's input file)
is named in the audit's `unread`, and a rule with `unread: deny` refuses it. A secret split across
two text parts of a message is found, each piece redacted in its part. A model name that holds a
secret is recorded as its placeholder in the audit, the metrics and mitmweb's summary."""

from __future__ import annotations

import base64
import json
import textwrap

import pytest
from tests.support import guardrail_samples as samples
from tests.support.answers import answered_by
from tests.support.aws import botocore_accepts
from tests.support.configs import every_provider
from tests.support.leaks import assert_no_secret, saved_flows, stopped_outputs
from tests.support.proxy import free_port
from tests.support.signed_bedrock import AWS_REAL, signed_answers

REDACTS, DENIES, STRICT = "tg-docs-redacts-0001", "tg-docs-denies-0001", "tg-docs-strict-0001"
AWS_VIRTUAL = ("TGDOCS00000000000000", "docs-virtual-SECRET-0000")
GITHUB = samples.SAMPLES["secrets.github_token"][0]
CARD = samples.SAMPLES["pii.payment_card"][0]
DOTENV = (
    f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\n"
    f"GITHUB_TOKEN={GITHUB}\nCARD={CARD}\n"
)
REDACTED = (
    "AWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
    "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\n"
    "GITHUB_TOKEN=[REDACTED:secrets.github_token]\nCARD=[REDACTED:pii.payment_card]\n"
)
FOUND = {
    "secrets.aws_access_key_id": 1,
    "secrets.aws_secret_access_key": 1,
    "secrets.github_token": 1,
    "pii.payment_card": 1,
}
B64 = base64.b64encode(DOTENV.encode()).decode()
# A PDF's first lines: its version, then a comment of bytes that are no text, as PDF writers put.
PDF = base64.b64encode(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + DOTENV.encode()).decode()
PEM = samples.pem()
PLANTED = [samples.AWS_KEY_ID, samples.AWS_SECRET, GITHUB, CARD, B64, PEM.splitlines()[1]]
DETECT = ["secrets", "pii.payment_card"]
METRICS = f"127.0.0.1:{free_port()}"


def config(urls: dict[str, str]) -> dict:
    keys = {name: f"real-{name}-key-0001" for name in ("openai", "anthropic", "gemini")}
    return {
        "providers": every_provider(urls, keys, AWS_REAL),
        "metrics": {"listen": METRICS},
        "clients": [
            {
                "name": "redacts",
                "keys": [REDACTS],
                "aws_credentials": [{"access_key_id": AWS_VIRTUAL[0], "secret_access_key": AWS_VIRTUAL[1]}],
            },
            {"name": "denies", "keys": [DENIES]},
            {"name": "strict", "keys": [STRICT]},
        ],
        "guardrails": [
            {"match": {"client": "redacts"}, "detect": DETECT, "action": "redact"},
            {"match": {"client": "denies"}, "detect": DETECT, "action": "deny"},
            {"match": {"client": "strict"}, "detect": DETECT, "action": "redact", "unread": "deny"},
        ],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    gateway = start_gateway(config, providers=("openai", "anthropic", "gemini", "bedrock"), save_flows=True)
    return answered_by(gateway, signed_answers)


def decoded(value: str, prefix: str = "") -> str:
    assert value.startswith(prefix)
    return base64.b64decode(value[len(prefix) :]).decode()


def test_an_openai_chat_file_part_is_redacted_inside_its_document(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{REDACTS}", max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {{"role": "user", "content": [{{"type": "text", "text": "What is in this file?"}},
                {{"type": "file", "file": {{"file_data": "data:text/plain;base64,{B64}", "filename": "app.env"}}}}]}}])
        report(ok=r.choices[0].message.content is not None)
        """
    )
    assert result == {"ok": True}
    seen = gw.fakes["openai"].received[-1]
    assert int(seen.headers["content-length"]) == len(seen.body)
    part = seen.json()["messages"][0]["content"][1]["file"]
    assert decoded(part["file_data"], "data:text/plain;base64,") == REDACTED
    assert part["filename"] == "app.env"
    record = gw.last_audit()
    assert (record["decision"], record["status"], record["findings"], record["redacted"], record["unread"]) == (
        "allow",
        200,
        FOUND,
        4,
        [],
    )


def refused(gw, sdk: str, call: str, kind: str) -> dict:
    """The SDK `sdk` (openai, anthropic) making `call` through `gw`: refused 403 (content_denied)
    for one `kind`, and nothing sent on to the provider of that name; the call's record."""
    before = len(gw.fakes[sdk].received)
    result = gw.run(
        f"""
import {sdk}
try:
{textwrap.indent(textwrap.dedent(call).strip(), "    ")}
    report(ok=False)
except {sdk}.PermissionDeniedError as e:
    report(status=e.status_code, error=e.response.headers["x-tollgate-error"], message=e.message)
"""
    )
    assert (result["status"], result["error"]) == (403, "content_denied")
    assert f"{kind} (1)" in result["message"]
    assert len(gw.fakes[sdk].received) == before
    return gw.last_audit()


def test_an_openai_chat_file_part_is_denied(gw):
    call = f"""
        openai.OpenAI(api_key="{DENIES}", max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {{"role": "user", "content": [{{"type": "file",
                "file": {{"file_data": "data:text/plain;base64,{B64}", "filename": "app.env"}}}}]}}])
        """
    record = refused(gw, "openai", call, "secrets.github_token")
    assert (record["decision"], record["deny_reasons"], record["findings"]) == ("deny", ["content_denied"], FOUND)


def test_a_responses_input_file_is_redacted_inside_its_document(gw):
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{REDACTS}", max_retries=0).responses.create(model="gpt-4o", input=[
            {{"role": "user", "content": [{{"type": "input_text", "text": "Summarize"}},
                {{"type": "input_file", "file_data": "data:text/csv;base64,{B64}", "filename": "cards.csv"}}]}}])
        report(ok=r.id is not None)
        """
    )
    assert result == {"ok": True}
    item = gw.fakes["openai"].received[-1].json()["input"][0]["content"][1]
    assert decoded(item["file_data"], "data:text/csv;base64,") == REDACTED
    record = gw.last_audit()
    assert (record["endpoint"], record["findings"], record["redacted"]) == ("responses", FOUND, 4)


def test_an_anthropic_document_is_redacted_and_a_text_document_denied(gw):
    result = gw.run(
        f"""
        import anthropic
        out = {{}}
        document = {{"type": "document", "source": {{"type": "base64", "media_type": "text/plain", "data": "{B64}"}}}}
        r = anthropic.Anthropic(api_key="{REDACTS}", max_retries=0).messages.create(model="claude-sonnet-4-5",
            max_tokens=10, messages=[{{"role": "user", "content": [document, {{"type": "text", "text": "Read it"}}]}}])
        out["redacted"] = r.id is not None
        plain = {{"type": "document", "source": {{"type": "text", "media_type": "text/plain", "data": {json.dumps(DOTENV)}}}}}
        try:
            anthropic.Anthropic(api_key="{DENIES}", max_retries=0).messages.create(model="claude-sonnet-4-5",
                max_tokens=10, messages=[{{"role": "user", "content": [plain]}}])
        except anthropic.PermissionDeniedError as e:
            out["denied"] = [e.status_code, e.response.headers["x-tollgate-error"]]
        report(**out)
        """
    )
    assert result == {"redacted": True, "denied": [403, "content_denied"]}
    received = gw.fakes["anthropic"].received
    source = received[-1].json()["messages"][0]["content"][0]["source"]
    assert (source["type"], source["media_type"]) == ("base64", "text/plain")
    assert decoded(source["data"]) == REDACTED
    redacted, denied = gw.new_audit(2)[-2:]
    assert (redacted["findings"], redacted["redacted"], redacted["unread"]) == (FOUND, 4, [])
    assert (denied["decision"], denied["findings"]) == ("deny", FOUND)


def test_an_anthropic_document_declared_binary_is_read_by_its_bytes(gw):
    result = gw.run(
        f"""
        import anthropic
        document = {{"type": "document",
                     "source": {{"type": "base64", "media_type": "application/octet-stream", "data": "{B64}"}}}}
        r = anthropic.Anthropic(api_key="{REDACTS}", max_retries=0).messages.create(model="claude-sonnet-4-5",
            max_tokens=10, messages=[{{"role": "user", "content": [document, {{"type": "text", "text": "Read it"}}]}}])
        report(ok=r.id is not None)
        """
    )
    assert result == {"ok": True}
    source = gw.fakes["anthropic"].received[-1].json()["messages"][0]["content"][0]["source"]
    assert (source["type"], source["media_type"]) == ("base64", "application/octet-stream")
    assert decoded(source["data"]) == REDACTED
    record = gw.last_audit()
    assert (record["findings"], record["redacted"], record["unread"]) == (FOUND, 4, [])


def test_a_gemini_inline_part_is_redacted_inside_its_document(gw):
    result = gw.run(
        f"""
        import base64
        from google import genai
        from google.genai import types
        client = genai.Client(api_key="{REDACTS}")
        document = types.Part.from_bytes(data=base64.b64decode("{B64}"), mime_type="text/plain")
        r = client.models.generate_content(model="gemini-2.0-flash", contents=[document, "What is in it?"])
        report(ok=r.text is not None)
        """
    )
    assert result == {"ok": True}
    part = gw.fakes["gemini"].received[-1].json()["contents"][0]["parts"][0]
    inline = part.get("inlineData") or part["inline_data"]
    assert decoded(inline["data"]) == REDACTED
    record = gw.last_audit()
    assert (record["findings"], record["redacted"]) == (FOUND, 4)


def test_a_converse_document_is_redacted_and_signed(gw):
    result = gw.run(
        f"""
        import base64, boto3
        from botocore.config import Config
        client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="{AWS_VIRTUAL[0]}",
            aws_secret_access_key="{AWS_VIRTUAL[1]}", config=Config(retries={{"total_max_attempts": 1}}))
        document = {{"document": {{"format": "txt", "name": "env", "source": {{"bytes": base64.b64decode("{B64}")}}}}}}
        r = client.converse(modelId="amazon.nova-lite-v1:0",
            messages=[{{"role": "user", "content": [document, {{"text": "Read it"}}]}}])
        report(ok=r["stopReason"])
        """
    )
    assert result == {"ok": "end_turn"}
    seen = gw.fakes["bedrock"].received[-1]
    assert botocore_accepts(seen, *AWS_REAL)
    assert decoded(seen.json()["messages"][0]["content"][0]["document"]["source"]["bytes"]) == REDACTED
    record = gw.last_audit()
    assert (record["auth"], record["findings"], record["redacted"]) == ("sigv4", FOUND, 4)


def test_a_pdf_is_unread_allowed_by_default_and_refused_by_unread_deny(gw):
    before = len(gw.fakes["openai"].received)
    result = gw.run(
        f"""
        import openai
        out = {{}}
        pdf = [{{"role": "user", "content": [{{"type": "file",
            "file": {{"file_data": "data:application/pdf;base64,{PDF}", "filename": "statement.pdf"}}}}]}}]
        r = openai.OpenAI(api_key="{REDACTS}", max_retries=0).chat.completions.create(model="gpt-4o", messages=pdf)
        out["allowed"] = r.id is not None
        try:
            openai.OpenAI(api_key="{STRICT}", max_retries=0).chat.completions.create(model="gpt-4o", messages=pdf)
        except openai.PermissionDeniedError as e:
            out["refused"] = [e.status_code, e.response.headers["x-tollgate-error"], e.message]
        report(**out)
        """
    )
    assert result["allowed"] is True
    assert result["refused"][:2] == [403, "content_denied"]
    assert "cannot read document" in result["refused"][2]
    assert len(gw.fakes["openai"].received) == before + 1
    allowed, refused = gw.new_audit(2)[-2:]
    assert (allowed["decision"], allowed["findings"], allowed["unread"]) == ("allow", {}, ["document"])
    assert (refused["decision"], refused["deny_reasons"], refused["unread"]) == (
        "deny",
        ["content_denied"],
        ["document"],
    )


# Content by reference under `unread: deny`: each with the SDK that sends it, and its `unread` name.
REFERENCES = {
    "chat_file_id": (
        "openai",
        """openai.OpenAI(api_key=KEY, max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc123"}}]}])""",
        ["file_reference"],
    ),
    "responses_file_url": (
        "openai",
        """openai.OpenAI(api_key=KEY, max_retries=0).responses.create(model="gpt-4o", input=[{"role": "user",
            "content": [{"type": "input_file", "file_url": "https://files.example.test/notes.txt"}]}])""",
        ["file_reference"],
    ),
    "responses_input_image_file_id": (
        "openai",
        """openai.OpenAI(api_key=KEY, max_retries=0).responses.create(model="gpt-4o", input=[{"role": "user",
            "content": [{"type": "input_image", "file_id": "file-img123"}]}])""",
        ["image"],
    ),
    "chat_image_url": (
        "openai",
        """openai.OpenAI(api_key=KEY, max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": [{"type": "image_url",
                "image_url": {"url": "https://images.example.test/screenshot.png"}}]}])""",
        ["image"],
    ),
    "batch_input_file_id": (
        "openai",
        """openai.OpenAI(api_key=KEY, max_retries=0).batches.create(input_file_id="file-batch123",
            endpoint="/v1/chat/completions", completion_window="24h")""",
        ["model", "batch_file"],  # its model is in the file too
    ),
    "anthropic_document_url": (
        "anthropic",
        """anthropic.Anthropic(api_key=KEY, max_retries=0).messages.create(model="claude-sonnet-4-5",
            max_tokens=10, messages=[{"role": "user", "content": [{"type": "document",
                "source": {"type": "url", "url": "https://files.example.test/notes.pdf"}}]}])""",
        ["file_reference"],
    ),
    "anthropic_document_file": (
        "anthropic",
        """anthropic.Anthropic(api_key=KEY, max_retries=0).messages.create(model="claude-sonnet-4-5",
            max_tokens=10, messages=[{"role": "user", "content": [{"type": "document",
                "source": {"type": "file", "file_id": "file_011abc"}}]}])""",
        ["file_reference"],
    ),
    "gemini_file_uri": (
        "gemini",
        """client = genai.Client(api_key=KEY)
        client.models.generate_content(model="gemini-2.0-flash", contents=[
            types.Part.from_uri(file_uri="https://generativelanguage.googleapis.com/v1beta/files/abc",
                mime_type="text/plain"), "Read it"])""",
        ["file_reference"],
    ),
}
ERRORS = {
    "openai": "openai.PermissionDeniedError",
    "anthropic": "anthropic.PermissionDeniedError",
    "gemini": "errors.ClientError",
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_content_by_reference_is_unread_and_refused_by_unread_deny(gw, name):
    provider, call, unread = REFERENCES[name]
    before = len(gw.fakes[provider].received)
    body = ("\n" + " " * 12).join(line.strip() for line in call.splitlines())  # as the try's block
    result = gw.run(
        f"""
        import anthropic, openai
        from google import genai
        from google.genai import errors, types
        KEY = "{STRICT}"
        try:
            {body}
            report(ok=False)
        except {ERRORS[provider]} as e:
            status = getattr(e, "status_code", None) or e.code
            report(status=status, error=e.response.headers["x-tollgate-error"])
        """
    )
    assert result == {"status": 403, "error": "content_denied"}
    assert len(gw.fakes[provider].received) == before
    record = gw.last_audit()
    assert (record["decision"], record["deny_reasons"], record["findings"], record["unread"]) == (
        "deny",
        ["content_denied"],
        {},  # read, and nothing found in what was read
        unread,
    )


def test_an_aws_key_id_split_across_two_text_parts_is_redacted_in_each(gw):
    first, second = f"my key is {samples.AWS_KEY_ID[:9]}", f"{samples.AWS_KEY_ID[9:]}, keep it safe"
    result = gw.run(
        f"""
        from openai import OpenAI
        r = OpenAI(api_key="{REDACTS}", max_retries=0).chat.completions.create(model="gpt-4o", messages=[
            {{"role": "user", "content": [{{"type": "text", "text": "{first}"}}, {{"type": "text", "text": "{second}"}}]}}])
        report(ok=r.choices[0].message.content is not None)
        """
    )
    assert result == {"ok": True}
    parts = gw.fakes["openai"].received[-1].json()["messages"][0]["content"]
    assert [p["text"] for p in parts] == [
        "my key is [REDACTED:secrets.aws_access_key_id]",
        "[REDACTED:secrets.aws_access_key_id], keep it safe",
    ]
    record = gw.last_audit()
    assert (record["findings"], record["redacted"]) == ({"secrets.aws_access_key_id": 1}, 2)


def test_a_private_key_split_across_text_blocks_is_denied(gw):
    lines = PEM.splitlines(keepends=True)
    blocks = [{"type": "text", "text": "my deploy key:\n" + lines[0]}, {"type": "text", "text": "".join(lines[1:])}]
    call = f"""
        anthropic.Anthropic(api_key="{DENIES}", max_retries=0).messages.create(model="claude-sonnet-4-5",
            max_tokens=10, messages=[{{"role": "user", "content": {json.dumps(blocks)}}}])
        """
    record = refused(gw, "anthropic", call, "secrets.private_key")
    assert (record["decision"], record["findings"]) == ("deny", {"secrets.private_key": 1})


def scrape() -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=10) as r:
        return r.read().decode()


def test_a_model_name_that_holds_a_secret_is_recorded_as_its_placeholder(gw):
    result = gw.run(
        f"""
        import openai
        out = {{}}
        r = openai.OpenAI(api_key="{REDACTS}", max_retries=0).chat.completions.create(model="{GITHUB}",
            messages=[{{"role": "user", "content": "hi"}}])
        out["redacted"] = r.id is not None
        try:
            openai.OpenAI(api_key="{DENIES}", max_retries=0).chat.completions.create(model="{GITHUB}",
                messages=[{{"role": "user", "content": "hi"}}])
        except openai.PermissionDeniedError as e:
            out["denied"] = e.status_code
        report(**out)
        """
    )
    assert result == {"redacted": True, "denied": 403}
    assert gw.fakes["openai"].received[-1].json()["model"] == "[REDACTED:secrets.github_token]"
    redacted, denied = gw.new_audit(2)[-2:]
    for record in (redacted, denied):
        assert (record["requested_model"], record["model"], record["findings"]) == (
            "[REDACTED:secrets.github_token]",
            "[REDACTED:secrets.github_token]",
            {"secrets.github_token": 1},
        )
    assert denied["decision"] == "deny"
    metrics = scrape()
    assert 'model="[REDACTED:secrets.github_token]"' in metrics
    assert GITHUB not in metrics


def test_no_planted_value_reaches_any_output(gw):
    """Last in the file: it stops the gateway to read its saved flows whole."""
    assert len(gw.audit()) >= 8
    metrics = scrape().encode()
    outputs = {"metrics": metrics, **stopped_outputs(gw)}
    assert b"content_denied" in outputs["audit"]
    assert_no_secret(outputs, PLANTED)
    # mitmweb's summary of a call names its model as the audit does.
    comments = [flow.comment for flow in saved_flows(gw.saved)]
    assert any("[REDACTED:secrets.github_token]" in c for c in comments), comments
