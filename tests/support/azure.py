"""A fake Azure OpenAI resource, and Entra ID's OpenID configuration and token endpoint beside it,
for the tests that drive AzureOpenAI through Tollgate."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs

from tests.support import streams
from tests.support.canned import provider_answers
from tests.support.fake_upstream import Received, Reply

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"
CLIENT_SECRET = "entra-CLIENT-secret-000000000004"
ENTRA_TOKEN = "eyJ0eXAi.entra-access-token.000000000005"
# The scope of Azure Government's Azure OpenAI, and the token the fake gives for it.
GOV_SCOPE = "https://cognitiveservices.azure.us/.default"
GOV_TOKEN = "eyJ0eXAi.entra-government-token.000000000006"


class FakeAzure:
    """Answers like an Azure OpenAI resource, and like Entra ID's OpenID configuration and token
    endpoint under /{tenant}/ (counting the tokens it gave, and noting the scopes asked for)."""

    def __init__(self, url: str, token_status: int = 200) -> None:
        self.url = url
        self.token_status = token_status
        self.tokens_given = 0
        self.scopes: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, r: Received) -> Reply:
        path = r.path.split("?", 1)[0]
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            base = f"{self.url}/{TENANT}"
            return Reply(
                200,
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "issuer": f"{base}/v2.0",
                },
            )
        if path == f"/{TENANT}/oauth2/v2.0/token":
            form = parse_qs(r.body.decode())
            if self.token_status != 200 or form.get("client_secret") != [CLIENT_SECRET]:
                return Reply(
                    self.token_status if self.token_status != 200 else 401,
                    {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                )
            scope = " ".join(form.get("scope", []))
            with self.lock:
                self.tokens_given += 1
                self.scopes.append(scope)
            token = GOV_TOKEN if GOV_SCOPE in scope.split() else ENTRA_TOKEN
            return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
        if path.endswith("/chat/completions") and r.json().get("stream"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_chat())
        if path.endswith("/responses") and r.json().get("stream"):
            return Reply(200, headers={"content-type": "text/event-stream"}, chunks=streams.openai_responses())
        return provider_answers(r)


def entra_env(upstream_ca_pem: Path) -> dict[str, str]:
    return {
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        # Only the client-secret credential of the chain: no other credential probes anything.
        "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential",
        "REQUESTS_CA_BUNDLE": str(upstream_ca_pem),
    }
