"""What the policy sees of the tools a call gives its model, through mitmdump with the official SDKs:
every field that grants a tool is denied by a rule on `input.request.has_tools`, the MCP servers a
call grants are named in `input.request.mcp_servers` (a rule denies one by its URL), and what
Tollgate cannot see into (a stored prompt, a cached content) is listed in `input.unread`."""

from __future__ import annotations

import json
import textwrap

import pytest

TIM = "tg-tim-no-tools-0123456789"  # group no-tools: no call of his may grant a tool
MIA = "tg-mia-careful-0123456789"  # group careful: nothing Tollgate cannot read
KEYS = {
    "openai": "sk-real-o",
    "gemini": "AIza-real-g",
    "anthropic": "sk-ant-real-a",
    "bedrock": "ABSK-real-b",
    "vertex": "AQ.real-vertex-express",
}
INTERNAL = "https://mcp.internal.example/mcp"
EVIL = "https://mcp.evil.example/mcp"
TOOLS_DENIED = "tools are not allowed"

POLICY = f"""package tollgate

import rego.v1

deny contains "{TOOLS_DENIED}" if {{
	"no-tools" in input.client.groups
	input.request.has_tools
}}

deny contains sprintf("MCP server %v is not allowed", [s.name]) if {{
	some s in input.request.mcp_servers
	s.url != "{INTERNAL}"
}}

deny contains sprintf("Tollgate cannot read the %s", [what]) if {{
	"careful" in input.client.groups
	some what in input.unread
	what in {{"stored_prompt", "cached_content"}}
}}
"""


@pytest.fixture(scope="module")
def gw(start_gateway, tmp_path_factory):
    policy = tmp_path_factory.mktemp("policy") / "tools.rego"
    policy.write_text(POLICY)
    return start_gateway(
        lambda urls: {
            "providers": {name: {"upstream": url, "keys": [KEYS[name]]} for name, url in urls.items()},
            "clients": [
                {"name": "tim", "keys": [TIM], "groups": ["no-tools"]},
                {"name": "mia", "keys": [MIA], "groups": ["careful"]},
            ],
            "policy": {"rego": [str(policy)]},
        },
        providers=("openai", "gemini", "anthropic", "bedrock", "vertex"),
    )


# The clients a snippet uses, by the name it calls them (each SDK takes seconds to import).
CLIENTS = {
    "claude.": "import anthropic\nclaude = anthropic.Anthropic(api_key=KEY, max_retries=0)",
    "anthropic.": "import anthropic",
    "oai.": "import openai\noai = openai.OpenAI(api_key=KEY, max_retries=0)",
    "openai.": "import openai",
    "gemini.": "from google import genai\ngemini = genai.Client(api_key=KEY)",
    "types.": "from google.genai import types",
    "bedrock.": 'import boto3\nbedrock = boto3.client("bedrock-runtime", region_name="us-east-1")',
}


def sdk(key: str, code: str) -> str:
    """`code` with the SDK clients it uses, for `key`."""
    clients = "\n".join(setup for name, setup in CLIENTS.items() if name in code)
    user = 'USER = [{"role": "user", "content": "hi"}]'
    return f'import json\nKEY = "{key}"\n{user}\n{clients}\n' + textwrap.dedent(code)


# Every way of granting a tool, each through the SDK that sends it.
GRANTS = {
    "anthropic-mcp-servers": ("anthropic", "PermissionDeniedError", f"""
        claude.beta.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER,
            mcp_servers=[{{"type": "url", "url": "{INTERNAL}", "name": "internal"}}], betas=["mcp-client-2025-04-04"])
    """),
    "anthropic-skills": ("anthropic", "PermissionDeniedError", """
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER,
            container={"skills": [{"type": "anthropic", "skill_id": "pptx", "version": "latest"}]})
    """),
    "openai-chat-web-search": ("openai", "PermissionDeniedError", """
        oai.chat.completions.create(model="gpt-4o-search-preview", messages=USER, web_search_options={})
    """),
    "openai-responses-stored-prompt": ("openai", "PermissionDeniedError", """
        oai.responses.create(prompt={"id": "pmpt_123", "version": "2"}, input="hi")
    """),
    "openai-assistant-run": ("openai", "PermissionDeniedError", """
        oai.beta.threads.runs.create(thread_id="thread_1", assistant_id="asst_1")
    """),
    "gemini-cached-content": ("gemini", "ClientError", """
        gemini.models.generate_content(model="gemini-2.5-flash", contents="hi",
            config=types.GenerateContentConfig(cached_content="cachedContents/abc"))
    """),
    "gemini-openai-cached-content": ("gemini", "PermissionDeniedError", """
        openai.OpenAI(api_key=KEY, max_retries=0, base_url="https://generativelanguage.googleapis.com/v1beta/openai/"
            ).chat.completions.create(model="gemini-2.5-flash", messages=USER,
                extra_body={"extra_body": {"google": {"cached_content": "cachedContents/abc"}}})
    """),
    "bedrock-converse-additional-fields": ("bedrock", "AccessDeniedException", """
        bedrock.converse(modelId="anthropic.claude-sonnet-4-5-v1:0",
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
            additionalModelRequestFields={"tools": [{"type": "computer_20250124", "name": "computer",
                "display_width_px": 1024, "display_height_px": 768}], "anthropic_beta": ["computer-use-2025-01-24"]})
    """),
    "bedrock-prompt-arn": ("bedrock", "AccessDeniedException", """
        bedrock.converse(modelId="arn:aws:bedrock:us-east-1:123456789012:prompt/PROMPT12345:1",
            promptVariables={"topic": {"text": "tolls"}})
    """),
    "bedrock-invoke-claude-mcp-servers": ("bedrock", "AccessDeniedException", f"""
        bedrock.invoke_model(modelId="anthropic.claude-sonnet-4-5-v1:0", body=json.dumps({{
            "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": USER,
            "mcp_servers": [{{"type": "url", "url": "{INTERNAL}", "name": "internal"}}]}}))
    """),
    "bedrock-openai-web-search": ("bedrock", "PermissionDeniedError", """
        openai.OpenAI(api_key=KEY, max_retries=0, base_url="https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1"
            ).chat.completions.create(model="openai.gpt-oss-120b-1:0", messages=USER, web_search_options={})
    """),
    "vertex-claude-mcp-servers": ("vertex", "PermissionDeniedError", f"""
        anthropic.AnthropicVertex(region="us-east5", project_id="caller-proj", access_token=KEY, max_retries=0
            ).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER,
                extra_body={{"mcp_servers": [{{"type": "url", "url": "{INTERNAL}", "name": "internal"}}]}})
    """),
    "vertex-openai-cached-content": ("vertex", "PermissionDeniedError", """
        openai.OpenAI(api_key=KEY, max_retries=0,
            base_url="https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi"
            ).chat.completions.create(model="google/gemini-2.5-flash", messages=USER,
                extra_body={"extra_body": {"google": {"cached_content": "c"}}})
    """),
}  # fmt: skip


@pytest.mark.parametrize(("provider", "error", "code"), list(GRANTS.values()), ids=list(GRANTS))
def test_every_field_that_grants_a_tool_is_denied_by_a_rule_on_has_tools(g, provider, error, code):
    result = g.run(sdk(TIM, code) + "\nreport(error=None)", env={"AWS_BEARER_TOKEN_BEDROCK": TIM})
    assert (result["error"], result["status"]) == (error, 403), result
    assert TOOLS_DENIED in result["message"]
    assert g.fakes[provider].received == []
    record = g.last_audit()
    assert (record["client"], record["has_tools"], record["decision"]) == ("tim", True, "deny")
    assert record["deny_reasons"] == [TOOLS_DENIED]


def test_a_realtime_session_whose_events_may_grant_tools_is_denied(g):
    result = g.run(f"""
        import asyncio
        from openai import AsyncOpenAI

        async def session():
            async with AsyncOpenAI(api_key="{TIM}", max_retries=0).realtime.connect(model="gpt-realtime") as conn:
                await conn.session.update(session={{"type": "realtime", "tools": [{{"type": "mcp",
                    "server_label": "evil", "server_url": "{EVIL}"}}]}})

        try:
            asyncio.run(session())
            report(error=None)
        except Exception as e:
            report(error=type(e).__name__, status=e.response.status_code,
                   message=json.loads(e.response.body)["error"]["message"])
    """)
    assert (result["error"], result["status"]) == ("InvalidStatus", 403), result
    assert TOOLS_DENIED in result["message"]
    assert g.fakes["openai"].received == []
    record = g.last_audit()
    assert (record["endpoint"], record["has_tools"], record["deny_reasons"]) == ("realtime", True, [TOOLS_DENIED])


@pytest.mark.parametrize(
    ("provider", "error", "code", "unread"),
    [
        ("openai", "PermissionDeniedError", GRANTS["openai-responses-stored-prompt"][2], "stored_prompt"),
        ("gemini", "ClientError", GRANTS["gemini-cached-content"][2], "cached_content"),
        ("vertex", "PermissionDeniedError", GRANTS["vertex-openai-cached-content"][2], "cached_content"),
        ("bedrock", "AccessDeniedException", GRANTS["bedrock-prompt-arn"][2], "stored_prompt"),
    ],
    ids=["openai-stored-prompt", "gemini-cached-content", "vertex-cached-content", "bedrock-stored-prompt"],
)
def test_what_tollgate_cannot_see_into_is_listed_as_unread(g, provider, error, code, unread):
    result = g.run(sdk(MIA, code) + "\nreport(error=None)", env={"AWS_BEARER_TOKEN_BEDROCK": MIA})
    reason = f"Tollgate cannot read the {unread}"
    assert (result["error"], result["status"]) == (error, 403), result
    assert reason in result["message"]
    assert g.fakes[provider].received == []
    record = g.last_audit()
    assert (record["has_tools"], record["has_system"], record["deny_reasons"]) == (True, True, [reason])


def mcp_tool(url: str, label: str) -> str:
    return json.dumps({"type": "mcp", "server_label": label, "server_url": url, "require_approval": "never"})


def test_a_rule_denies_an_mcp_server_by_its_url_and_lets_another_through(g):
    denied = g.run(
        sdk(
            MIA,
            f"""
        oai.responses.create(model="gpt-5", input="hi", tools=[{mcp_tool(EVIL, "evil")}])
        report(error=None)
    """,
        )
    )
    reason = "MCP server evil is not allowed"
    assert (denied["error"], denied["status"]) == ("PermissionDeniedError", 403), denied
    assert reason in denied["message"]
    assert g.fakes["openai"].received == []
    assert g.last_audit()["deny_reasons"] == [reason]
    allowed = g.run(
        sdk(
            MIA,
            f"""
        r = oai.responses.create(model="gpt-5", input="hi", tools=[{mcp_tool(INTERNAL, "wiki")}])
        report(id=r.id)
    """,
        )
    )
    assert "error" not in allowed, allowed
    (seen,) = g.fakes["openai"].received
    assert seen.json()["tools"] == [json.loads(mcp_tool(INTERNAL, "wiki"))]
    record = g.last_audit()
    assert (record["decision"], record["has_tools"], record["status"]) == ("allow", True, 200)


@pytest.mark.parametrize(
    ("provider", "error", "code"),
    [
        ("anthropic", "PermissionDeniedError", f"""
            claude.beta.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER,
                mcp_servers=[{{"type": "url", "url": "{INTERNAL}", "name": "a"}}, {{"type": "url", "url": "{EVIL}", "name": "evil"}}],
                betas=["mcp-client-2025-04-04"])
        """),
        ("gemini", "ClientError", f"""
            server = types.McpServer(name="evil", streamable_http_transport=types.StreamableHttpTransport(url="{EVIL}"))
            gemini.models.generate_content(model="gemini-2.5-flash", contents="hi",
                config=types.GenerateContentConfig(tools=[types.Tool(mcp_servers=[server])]))
        """),
        ("bedrock", "AccessDeniedException", f"""
            bedrock.converse(modelId="anthropic.claude-sonnet-4-5-v1:0", messages=[{{"role": "user", "content": [{{"text": "hi"}}]}}],
                additionalModelRequestFields={{"mcp_servers": [{{"type": "url", "url": "{EVIL}", "name": "evil"}}]}})
        """),
    ],
    ids=["anthropic", "gemini", "bedrock-converse"],
)  # fmt: skip
def test_the_mcp_servers_of_every_provider_reach_the_policy(g, provider, error, code):
    result = g.run(sdk(MIA, code) + "\nreport(error=None)", env={"AWS_BEARER_TOKEN_BEDROCK": MIA})
    reason = "MCP server evil is not allowed"
    assert (result["error"], result["status"]) == (error, 403), result
    assert reason in result["message"]
    assert g.fakes[provider].received == []
    assert g.last_audit()["deny_reasons"] == [reason]


def test_an_mcp_server_a_connector_names_has_no_url(g):
    result = g.run(
        sdk(
            MIA,
            """
        oai.responses.create(model="gpt-5", input="hi",
            tools=[{"type": "mcp", "server_label": "Dropbox", "connector_id": "connector_dropbox"}])
        report(error=None)
    """,
        )
    )
    assert (result["error"], result["status"]) == ("PermissionDeniedError", 403), result
    assert "MCP server Dropbox is not allowed" in result["message"]  # its url is null


def test_an_mcp_server_not_read_exactly_is_refused_400_in_the_providers_shape(g):
    result = g.run(
        sdk(
            MIA,
            f"""
        try:
            oai.responses.create(model="gpt-5", input="hi",
                tools=[{{**{mcp_tool(INTERNAL, "wiki")}, "connector_id": "connector_gmail"}}])
        except openai.BadRequestError as e:
            report(error=type(e).__name__, status=e.status_code, code=e.code,
                   tollgate=e.response.headers.get("x-tollgate-error"), message=e.message)
    """,
        )
    )
    assert (result["error"], result["status"], result["code"], result["tollgate"]) == (
        "BadRequestError", 400, "bad_request", "bad_request",
    )  # fmt: skip
    assert "tools[0] gives more than one of server_url, connector_id and tunnel_id" in result["message"]
    assert g.fakes["openai"].received == []
    record = g.last_audit()
    assert (record["endpoint"], record["status"], record["decision"]) == ("responses", 400, "deny")
