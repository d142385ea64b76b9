"""The JSON-RPC messages of an MCP client's POST, read exactly: each request's method and id, and
what a policy decides on (a `tools/call`'s tool, a `resources/read`'s URI scheme, a `prompts/get`'s
prompt). Never the arguments, the URI or anything else a request carries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tollgate.formats.bodies.exact import Unreadable
from tollgate.formats.framing import DecodedTooLarge, Decompressor, Undecodable

TOOLS_CALL = "tools/call"
TOOLS_LIST = "tools/list"
RESOURCES_READ = "resources/read"
PROMPTS_GET = "prompts/get"
# Where a request at 2026-07-28 states its revision: its params' `_meta`.
VERSION_META = "io.modelcontextprotocol/protocolVersion"

RequestId = str | int


@dataclass(frozen=True, slots=True)
class McpRequest:
    """One JSON-RPC request (or notification: no id) of a client's POST."""

    method: str
    id: RequestId | None = None
    tool: str | None = None  # tools/call's params.name
    resource_scheme: str | None = None  # resources/read's params.uri's scheme, lower case
    prompt: str | None = None  # prompts/get's params.name
    # The revision its params' `_meta` states (2026-07-28 on), and what its `Mcp-Name` header must
    # say (a tool's or a prompt's name, a resource's URI): checked against the headers, never kept.
    version: str | None = None
    named: str | None = field(default=None, repr=False, compare=False)
    # A retry's answer to an `input_required` result: a SHA-256 of the `requestState` it echoes.
    state: str | None = None

    @property
    def target(self) -> str | None:
        """What it calls, gets or reads, as a SHA-256 (a URI may hold anything): what a retry must
        name as the call it answers did."""
        return None if self.named is None else digest(self.named)

    @property
    def notification(self) -> bool:
        return self.id is None


@dataclass(frozen=True, slots=True)
class Posted:
    """What one POST holds: its requests and notifications in order, how many answers to the
    server's own requests (sampling, elicitation) it carries, and whether it was a batch."""

    requests: tuple[McpRequest, ...]
    responses: int = 0
    batch: bool = False


# The encodings a POST may come in (those mitmproxy decodes, but for Python's codecs it also
# takes, such as base64, which no server reads).
ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")


def decoded_post(body: bytes | None, encoding: str | None, limit: int) -> bytes | None:
    """A POST's body with its Content-Encoding undone, exactly and to no more than `limit` bytes;
    `Unreadable`, saying why, for an encoding Tollgate does not read (several in a row among them),
    bytes that do not decode as it says or go on after its end, or a body past `limit`."""
    name = (encoding or "identity").strip().lower()
    if name == "identity" or not body:
        return body
    if name not in ENCODINGS:
        raise Unreadable(f"Tollgate reads MCP requests encoded with gzip, deflate, br or zstd, not {encoding!r}")
    decoder = Decompressor(name, limit)
    try:
        decoded = decoder.feed(body)
    except DecodedTooLarge:
        size = f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"
        raise Unreadable(f"the body decodes to more than {size}") from None
    except Undecodable:
        raise Unreadable(f"the body does not decode as its Content-Encoding ({name}) says") from None
    if not decoder.finished:
        raise Unreadable(f"the body ends before its {name}-encoded data does")
    return decoded


def read_post(body: bytes | None) -> Posted:
    """The messages of a POST body; `Unreadable` for anything a server might read otherwise than
    Tollgate: not UTF-8 JSON, a key repeated, no `"jsonrpc": "2.0"`, an id that is neither a string
    nor an integer (or repeated in a batch), a tool or prompt call without its name."""
    if not body:
        raise Unreadable("an MCP POST carries a JSON-RPC message, and this one is empty")
    value = _exact_json(body)
    if isinstance(value, dict):
        messages, batch = [value], False
    elif isinstance(value, list) and value:
        messages, batch = value, True
    else:
        raise Unreadable("the body is neither a JSON-RPC message nor a batch of them")
    requests: list[McpRequest] = []
    responses = 0
    ids: set[tuple[type, RequestId]] = set()
    for message in messages:
        if not isinstance(message, dict):
            raise Unreadable("a batch element is not a JSON-RPC message")
        if message.get("jsonrpc") != "2.0":
            raise Unreadable('a message lacks "jsonrpc": "2.0"')
        if "method" not in message:
            _check_response(message)
            responses += 1
            continue
        request = _request(message)
        if request.id is not None:
            key = (type(request.id), request.id)
            if key in ids:
                raise Unreadable("a batch repeats a request id")
            ids.add(key)
        requests.append(request)
    return Posted(tuple(requests), responses, batch)


def _request(message: dict[str, Any]) -> McpRequest:
    method = message["method"]
    if not isinstance(method, str):
        raise Unreadable("a request's method is not a string")
    request_id = _id(message) if "id" in message else None
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        raise Unreadable(f"{method}'s params are not an object")
    params = params or {}
    version = _version(params, method)
    state = params.get("requestState")
    state = digest(state) if isinstance(state, str) else None
    if method == TOOLS_CALL:
        name = _name(params, method)
        return McpRequest(method, request_id, tool=name, version=version, named=name, state=state)
    if method == PROMPTS_GET:
        name = _name(params, method)
        return McpRequest(method, request_id, prompt=name, version=version, named=name, state=state)
    if method == RESOURCES_READ:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise Unreadable("resources/read names no URI")
        scheme = _scheme(uri)
        return McpRequest(method, request_id, resource_scheme=scheme, version=version, named=uri, state=state)
    return McpRequest(method, request_id, version=version)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _version(params: dict[str, Any], method: str) -> str | None:
    meta = params.get("_meta")
    if meta is None or (isinstance(meta, dict) and VERSION_META not in meta):
        return None
    if not isinstance(meta, dict) or not isinstance(meta[VERSION_META], str):
        raise Unreadable(f"{method}'s _meta states a protocol version that is not a string")
    return meta[VERSION_META]


def _id(message: dict[str, Any]) -> RequestId:
    value = message["id"]
    # MCP's ids are strings or integers, never null; true would equal 1 to a dict.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Unreadable("a request id is neither a string nor an integer")
    return value


def _name(params: dict[str, Any], method: str) -> str:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise Unreadable(f"{method} names no {'tool' if method == TOOLS_CALL else 'prompt'}")
    return name


def _scheme(uri: str) -> str | None:
    try:
        scheme = urlsplit(uri).scheme
    except ValueError:
        raise Unreadable("resources/read's URI cannot be read") from None
    return scheme.lower() or None


def _check_response(message: dict[str, Any]) -> None:
    if "id" not in message or ("result" in message) == ("error" in message):
        raise Unreadable("a message is neither a request, a notification nor a response")


def _exact_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("the body is not UTF-8") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise Unreadable("the JSON body is nested too deeply") from None
    except ValueError as e:
        raise e if isinstance(e, Unreadable) else Unreadable("the body is not JSON") from None


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A server whose parser keeps the last of a repeated key would call another tool than Tollgate read.
    value = dict(pairs)
    if len(value) != len(pairs):
        raise Unreadable("the JSON body repeats a key in one object")
    return value


def _reject_constant(name: str) -> Any:
    raise Unreadable(f"the JSON body holds {name}, which is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_repeated_keys, parse_constant=_reject_constant)


def error_message(request_id: RequestId | None, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
