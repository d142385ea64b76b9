"""A provider added as the recipe in docs/architecture.md says, on a format Tollgate reads (OpenAI
chat) with a kind of credential it has (a key in a header): its module, one class declaring its
parts, and its line in `providers/__init__.py` (the import and its place in `_BUILT_IN`). Both are
done for real, in a fresh interpreter whose `tollgate.providers` is its source with those lines
added. There a configuration names it under `providers.<name>` with a key, and a call to its host
goes through the real pipeline: classified as its call, its caller's virtual key swapped for its
key, sent to its upstream, its usage read by its format and priced by its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.audit_fields import assert_fields
from tests.support.pipeline import UPSTREAM_KEY, VIRTUAL_KEY

import tollgate.providers

ROOT = Path(__file__).resolve().parents[3]
PROVIDERS = Path(tollgate.providers.__file__).parent

# The module: providers/linehost.py.
MODULE = '''"""Line Host: OpenAI's chat under /v2/chat, keys in Authorization, OpenAI's models and prices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from tollgate.formats import OPENAI_API, OPENAI_CHAT
from tollgate.formats.openai_api.request import classify_body
from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.request_facts import Classification
from tollgate.providers.routing import Routing
from tollgate.providers.base import ChatLeg, Provider
from tollgate.providers.cost import Cost
from tollgate.providers.credentials import CallerKeys, Credentials, KeyPlacement
from tollgate.providers.upstream import Upstream


class LineHost(Provider):
    name = semconv_name = "linehost"
    host_globs = ("api.line.example",)
    host_pattern = r"api\\.line\\.example"
    credentials = Credentials(CallerKeys("X-Line-Key", ("authorization",)), KeyPlacement("authorization"))
    cost = Cost("openai")
    upstream = Upstream("api.line.example")
    routing = Routing(chat_formats={"chat.completions": OPENAI_CHAT})
    error_format = OPENAI_API

    def native_chat(self, model: str, stream: bool, source: str) -> ChatLeg:
        return ChatLeg("/v2/chat", OPENAI_CHAT)

    def classify(self, method: str, path: str, data: dict[str, Any] | None, query: str = "") -> Classification:
        if path.partition("?")[0] != "/v2/chat":
            raise Unreadable("Line Host's one path is /v2/chat")
        return classify_body("chat.completions", method, data)
'''

# The two lines in providers/__init__.py, and what runs the call through the pipeline.
SCRIPT = """
import asyncio, importlib.abc, importlib.util, json, sys
from pathlib import Path

package, extra, config = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])


class WithItsLines(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = (package / "__init__.py").read_text(encoding="utf-8")
        start = source.index("_BUILT_IN: tuple[Provider, ...] = (")
        end = source.index("\\n)", start)  # the tuple's end
        source = (
            source[:start] + "from tollgate.providers.linehost import LineHost\\n\\n"
            + source[start:end] + ", LineHost()" + source[end:]
        )
        exec(compile(source, str(package / "__init__.py"), "exec"), module.__dict__)


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tollgate.providers":
            return None
        return importlib.util.spec_from_file_location(
            name, package / "__init__.py", loader=WithItsLines(), submodule_search_locations=[str(package), extra]
        )


sys.meta_path.insert(0, Finder())

from tests.support.pipeline import configured_gateway, one_call
from tests.unit.recipes.conftest import chat_chunks, chat_flow

found = {}
for host, path, provider in (("api.line.example", "/v2/chat", "linehost"), ("api.openai.com", "/v1/chat/completions", "openai")):
    flow = chat_flow({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True})
    flow.request.host = flow.request.headers["host"] = flow.client_conn.sni = host
    flow.request.path = path
    with configured_gateway(config) as addon:
        sent, received = asyncio.run(one_call(addon, flow, chat_chunks("Hello!")))
    found[provider] = {"url": sent.url, "authorization": sent.headers.get_all("authorization"), "received": received.decode()}
print(json.dumps(found))
"""


def run(tmp_path: Path) -> dict[str, Any]:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "linehost.py").write_text(MODULE, encoding="utf-8")
    config = tmp_path / "tollgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "linehost": {"upstream": "https://127.0.0.1:9", "keys": [UPSTREAM_KEY]},
                    "openai": {"upstream": "https://127.0.0.1:8", "keys": ["sk-openai-0123456789"]},
                },
                "clients": [{"name": "alice", "keys": [VIRTUAL_KEY]}],
                "allow_anonymous": False,
                "audit": {"path": str(tmp_path / "audit.jsonl")},
            }
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "addons"), str(ROOT)))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PROVIDERS), str(extra), str(config)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_provider_of_one_class_and_its_line_is_classified_credentialed_and_priced(tmp_path: Path) -> None:
    found = run(tmp_path)

    line = found["linehost"]
    assert line["url"] == "https://127.0.0.1:9/v2/chat"
    assert line["authorization"] == [f"Bearer {UPSTREAM_KEY}"]  # its key in place of the virtual key
    assert "Hello!" in line["received"]
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    by_provider = {r["provider"]: r for r in map(json.loads, lines) if r.get("event") == "llm_call"}
    record = by_provider["linehost"]
    assert_fields(record, client="alice", endpoint="chat.completions", model="gpt-4o-mini", decision="allow")
    assert (record["input_tokens"], record["output_tokens"]) == (9, 3)
    # Priced by its table (OpenAI's) as an OpenAI call of the same model and usage is.
    assert record["cost_usd"] is not None and record["cost_usd"] > 0
    assert record["cost_usd"] == by_provider["openai"]["cost_usd"]
