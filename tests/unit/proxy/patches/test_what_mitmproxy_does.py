"""What each patch of mitmproxy (`tollgate.proxy.patches`) relies on in mitmproxy, h2, h11, hpack
and wsproto, checked against the release installed: a release that changes it turns a test red that
names the patch and what changed, for the patch to be read again against the new code.

Each function a patch replaces or wraps is pinned by its signature and a hash of its source (a
wrapped layer state is relied on for the commands it yields, which no signature shows); each name
a patch reads or sets on mitmproxy's objects must still be there. They are read in a fresh
interpreter, since the patches, once installed by other tests, stand in mitmproxy's place. Where
what a patch relies on is cheap to run, it is run (the last tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import h11
import pytest
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from hyperframe.frame import GoAwayFrame
from mitmproxy import options
from mitmproxy.net.http import http1
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HttpStream, ResponseData, ResponseEndOfMessage
from mitmproxy.proxy.layers.http._http2 import parse_h2_request_headers
from mitmproxy.test import tflow

PATCHES = Path(__file__).parents[4] / "addons" / "tollgate" / "proxy" / "patches"

# (patch, what it replaces, wraps or calls, its parameters, sha256 of its source: the first 16 digits)
REPLACED = [
    (
        "connections.close_connections_cancelled_while_waiting",
        "mitmproxy.proxy.server:ConnectionHandler.handle_connection",
        "(self, connection)",
        "95c3f93e9824e527",
    ),
    (
        "connections.finish_streams_after_a_clients_goaway",
        "mitmproxy.proxy.layers.http._http2:BufferedH2Connection._receive_goaway_frame",
        "(self, frame)",
        "adb9adfae94088c4",
    ),
    ("console.leave_calls_to_their_line", "mitmproxy.addons.dumper:Dumper.match", "(self, f)", "ae4f996a70cc1b2c"),
    ("dispatch.cheaper_hook_dispatch", "mitmproxy.addonmanager:safecall", "()", "f2052c18340e99b0"),
    ("dispatch.cheaper_hook_dispatch", "mitmproxy.hooks:Hook.args", "(self)", "5bab95f7aa358e18"),
    (
        "dispatch.cheaper_hook_dispatch",
        "mitmproxy.addonmanager:AddonManager.invoke_addon_sync",
        "(self, addon, event)",
        "212818268a95797b",
    ),
    (
        "dispatch.cheaper_hook_dispatch",
        "mitmproxy.addonmanager:AddonManager.invoke_addon",
        "(self, addon, event)",
        "13180532440359de",
    ),
    ("dispatch.cheaper_hook_dispatch", "mitmproxy.addonmanager:cut_traceback", "(tb, func_name)", "760a58f630c0fa44"),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.http._http1:Http1Server.__init__",
        "(self, context)",
        "508efbb58d5dead1",
    ),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.http._http2:Http2Server.__init__",
        "(self, context)",
        "fbaceff7e0dfcd9e",
    ),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.http._http1:Http1Server.send",
        "(self, event)",
        "cc218a1337c0f5cf",
    ),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.http._http1:Http1Server.mark_done",
        "(self, *, request=False, response=False)",
        "94fd7ea388c88671",
    ),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.http._http2:Http2Server._handle_event",
        "(self, event)",
        "7282fa18e70a3eaa",
    ),
    (
        "connection_drain.drain_connections",
        "mitmproxy.proxy.layers.websocket:WebsocketLayer.relay_messages",
        "(self, event)",
        "2d451252c7287da0",
    ),
    (
        "connection_drain.begin_drain",
        "mitmproxy.proxy.server:ConnectionHandler.close_connection",
        "(self, connection, half_close=False)",
        "c0d10cc05dd65b80",
    ),
    (
        "connection_drain.close_websocket",
        "mitmproxy.addons.proxyserver:Proxyserver.inject_event",
        "(self, event)",
        "2c18850a10b55b72",
    ),
    (
        "http_stream.serve_responses_set_by_error_hook",
        "mitmproxy.proxy.layers.http:HttpStream.handle_protocol_error",
        "(self, event)",
        "59fc3b2eeeabf63a",
    ),
    (
        "http_stream.note_requests_sent",
        "mitmproxy.proxy.layers.http:HttpStream.state_consume_request_body",
        "(self, event)",
        "45459c1bbd8bdb1a",
    ),
    (
        "http_stream.note_requests_sent",
        "mitmproxy.proxy.layers.http:HttpStream.state_stream_request_body",
        "(self, event)",
        "c98f7f715cef7cfa",
    ),
    (
        "http_stream.end_flows_waiting_for_response",
        "mitmproxy.proxy.layers.http:HttpLayer._handle_event",
        "(self, event)",
        "6ba31883cc7a06b3",
    ),
    (
        "http_stream.end_flows_waiting_for_response",
        "mitmproxy.proxy.layers.http:HttpStream._handle_event",
        "(self, event)",
        "e3cbfef7310ae81f",
    ),
    (
        "http_stream.end_flows_waiting_for_response",
        "mitmproxy.proxy.layers.http:HttpLayer.event_to_child",
        "(self, child, event)",
        "1095f6e1581d1780",
    ),
    (
        "http_stream.finish_streamed_responses",
        "mitmproxy.proxy.layers.http:HttpStream.send_response",
        "(self, already_streamed=False)",
        "d581bc106152e369",
    ),
    (
        "http_stream.bound_responses_read_whole",
        "mitmproxy.proxy.layers.http:HttpStream.state_consume_response_body",
        "(self, event)",
        "5323db61dfc7e2e1",
    ),
    (
        "http_stream.bound_responses_read_whole",
        "mitmproxy.proxy.layers.http:HttpStream.start_response_stream",
        "(self)",
        "b0de9e9a5ee27276",
    ),
    (
        "http_stream.stop_streams_their_taps_end",
        "mitmproxy.proxy.layers.http:HttpStream.state_stream_response_body",
        "(self, event)",
        "3fb6320300d3ddd5",
    ),
    (
        "http_stream.stop_streams_their_taps_end",
        "mitmproxy.proxy.layers.http:HttpStream.state_errored",
        "(self, _)",
        "3e7a286f27b15880",
    ),
    (
        "http_stream.read_large_pieces_apart",
        "mitmproxy.proxy.server:ConnectionHandler.hook_task",
        "(self, hook)",
        "9ac7970160526268",
    ),
    (
        "http_stream.read_large_pieces_apart",
        "mitmproxy.proxy.server:ConnectionHandler.server_event",
        "(self, event)",
        "a2b42657ebe8bf6d",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http1:Http1Server.read_headers",
        "(self, event)",
        "3fe0945216bcf7bc",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http1:Http1Client.read_headers",
        "(self, event)",
        "415454c5fa8b5981",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http2:Http2Server.handle_h2_event",
        "(self, event)",
        "d24a023c678de6ce",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.addons.next_layer:NextLayer._get_host_header",
        "(context, data_client, data_server)",
        "cb608ac9b6e66c02",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http1:Http1Connection.wait",
        "(self, event)",
        "c99d0494a840a2b6",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http1:make_error_response",
        "(status_code, message='')",
        "03ce75ab62e8e78b",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http2:parse_h2_request_headers",
        "(h2_headers)",
        "464eb8bb2fd7cae5",
    ),
    (
        "head_bounds.bound_message_heads",
        "mitmproxy.proxy.layers.http._http2:Http2Connection.protocol_error",
        "(self, message, error_code=<ErrorCodes.PROTOCOL_ERROR: 1>)",
        "461f5e7de9c9b687",
    ),
    ("head_bounds.bound_message_heads", "mitmproxy.net.http.http1:read_request_head", "(lines)", "d7a54f7078584448"),
    (
        "head_bounds.bound_message_heads",
        "h2.connection:H2Connection._receive_headers_frame",
        "(self, frame)",
        "4a014e7d795a15a5",
    ),
    (
        "messages.relay_http1_trailers",
        "mitmproxy.proxy.layers.http._http1:Http1Connection.read_body",
        "(self, event)",
        "aece271029af36e4",
    ),
    ("messages.relay_http1_trailers", "h11._readers:ChunkedReader.__call__", "(self, buf)", "2618d847a89a1505"),
    (
        "messages.bound_websocket_messages",
        "mitmproxy.proxy.layers.websocket:WebsocketConnection.events",
        "(self)",
        "e4d77be0bfef1af2",
    ),
    (
        "messages.relay_injected_messages_apart",
        "mitmproxy.proxy.layers.websocket:Fragmentizer.__call__",
        "(self, content)",
        "b4c8fd9dcb743f66",
    ),
    (
        "messages.relay_injected_messages_apart",
        "mitmproxy.proxy.layers.websocket:WebsocketConnection.send2",
        "(self, event)",
        "f33f2c236db2bec9",
    ),
    (
        "resend.resend_failed_attempts",
        "mitmproxy.proxy.layers.http:HttpStream.state_wait_for_response_headers",
        "(self, event)",
        "10e32e91b2948164",
    ),
    (
        "resend.resend_failed_attempts",
        "mitmproxy.proxy.layers.http:HttpStream.make_server_connection",
        "(self)",
        "ddc7bc72f4d2fbc7",
    ),
]

# Per patch: the classes of mitmproxy's (or of a library under it) it touches, each with the names the
# patch reads or sets on it or its instances
TOUCHED: dict[str, list[tuple[str, str]]] = {
    "connections": [
        ("mitmproxy.proxy.server:ConnectionHandler", "transports _server_event_lock client"),
        ("mitmproxy.proxy.server:ConnectionIO", "writer handler"),
        ("mitmproxy.connection:ConnectionState", "CLOSED CAN_WRITE"),
        ("h2.connection:H2Connection", "config"),
        ("h2.config:H2Configuration", "client_side"),
    ],
    "connection_drain": [
        (
            "mitmproxy.proxy.layers.http._http1:Http1Server",
            "state read_headers done passthrough buf request conn context",
        ),
        ("mitmproxy.proxy.layers.http._http2:Http2Server", "h2_conn conn context"),
        ("h2.connection:H2Connection", "open_inbound_streams highest_inbound_stream_id"),
        ("mitmproxy.proxy.layers.websocket:WebsocketLayer", "server_ws context"),
        ("wsproto.connection:Connection", "_events"),
        ("mitmproxy.addons.proxyserver:Proxyserver", "servers connections"),
        ("mitmproxy.proxy.mode_servers:AsyncioServerInstance", "_servers"),
        ("mitmproxy.proxy.layers.websocket:WebSocketMessageInjected", "flow message"),
    ],
    "http_stream": [
        (
            "mitmproxy.proxy.layers.http:HttpStream",
            "flow stream_id context server_state client_state state_done state_errored response_body_buf _paused_event_queue handle_event",
        ),
        ("mitmproxy.proxy.layers.http:HttpLayer", "streams connections"),
        ("mitmproxy.proxy.layers.http:HttpResponseHook", "flow"),
        ("mitmproxy.proxy.layers.http:DropStream", "stream_id"),
    ],
    "head_bounds": [
        (
            "mitmproxy.proxy.layers.http._http1:Http1Server",
            "buf stream_id request request_done response_done state send mark_done done conn context",
        ),
        ("mitmproxy.proxy.layers.http._http1:Http1Client", "buf stream_id state done conn"),
        ("h11._receivebuffer:ReceiveBuffer", "_data maybe_extract_at_most"),
        ("h2.connection:H2Connection", "decoder _frame_dispatch_table"),
        ("hpack.hpack:Decoder", "max_header_list_size"),
        ("mitmproxy.addons.next_layer:NeedsMoreData", ""),
    ],
    "messages": [
        ("mitmproxy.proxy.layers.http._http1:Http1Connection", "body_reader request response"),
        ("mitmproxy.proxy.layers.websocket:WebsocketConnection", "frame_buf conn"),
        ("mitmproxy.proxy.layers.websocket:WebsocketLayer", "flow server_ws client_ws"),
        ("mitmproxy.proxy.layers.websocket:WebsocketMessageHook", "flow"),
        ("mitmproxy.websocket:WebSocketMessage", "dropped injected from_client content type"),
    ],
    "resend": [
        (
            "mitmproxy.proxy.layers.http:HttpStream",
            "flow stream_id context server_state client_state state_done _paused_event_queue",
        ),
        ("mitmproxy.proxy.layers.http:HttpLayer", "connections"),
        ("mitmproxy.proxy.layers.http._http1:Http1Client", "state done"),
        ("mitmproxy.proxy.layers.http._http2:Http2Client", "our_stream_id streams"),
    ],
}
# (patch, class, names): a row for each class a patch touches
NAMES = [(patch, owner, wanted) for patch, touched in TOUCHED.items() for owner, wanted in touched]

# Run in a fresh interpreter, where nothing of Tollgate's is installed in mitmproxy.
PROBE = r"""
import hashlib, importlib, importlib.metadata, inspect, json, re, sys

def release(target):
    top = target.partition(":")[0].split(".")[0]
    return f"{top} {importlib.metadata.version(top)}"

def resolve(target):
    module, _, path = target.partition(":")
    value = importlib.import_module(module)
    for part in path.split("."):
        value = inspect.getattr_static(value, part) if inspect.isclass(value) else getattr(value, part)
    return value.__func__ if isinstance(value, (staticmethod, classmethod)) else value

def function(target):
    try:
        value = resolve(target)
    except (ImportError, AttributeError) as e:
        return {"missing": str(e), "release": release(target)}
    if isinstance(value, property):
        value = value.fget
    signature = inspect.signature(value)  # its parameters, as a caller passes them: no annotations
    bare = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    return {
        "release": release(target),
        "signature": str(signature.replace(parameters=bare, return_annotation=signature.empty)),
        "sha": hashlib.sha256(inspect.getsource(value).encode()).hexdigest()[:16],
    }

def has(cls, name):
    for klass in inspect.getmro(cls):
        if name in vars(klass) or name in getattr(klass, "__annotations__", {}):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(r"\bself\." + re.escape(name) + r"\s*(:[^=\n]*)?=[^=]", source):
            return True
    return False

def names(owner, wanted):
    try:
        cls = resolve(owner)
    except (ImportError, AttributeError) as e:
        return {"missing": str(e), "release": release(owner)}
    return {"absent": [n for n in wanted.split() if not has(cls, n)], "release": release(owner)}

asked = json.load(sys.stdin)
print(json.dumps({
    "functions": {t: function(t) for t in asked["functions"]},
    "names": {o + " " + w: names(o, w) for o, w in asked["names"]},
}))
"""


@cache
def probed() -> dict[str, Any]:
    asked = {"functions": [t for _, t, _, _ in REPLACED], "names": [[o, w] for _, o, w in NAMES]}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], input=json.dumps(asked), capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_every_patch_module_says_what_it_relies_on() -> None:
    modules = {p.stem for p in PATCHES.glob("*.py")} - {"__init__"}
    assert {patch.split(".")[0] for patch, *_ in REPLACED} == modules
    assert {patch for patch, *_ in NAMES} <= modules


@pytest.mark.parametrize(("patch", "target", "signature", "sha"), REPLACED, ids=[f"{p}-{t}" for p, t, *_ in REPLACED])
def test_what_a_patch_replaces_is_as_it_was(patch: str, target: str, signature: str, sha: str) -> None:
    seen = probed()["functions"][target]
    release = seen["release"]
    assert "missing" not in seen, f"patch {patch}: {target} is gone in {release} ({seen.get('missing')})"
    assert seen["signature"] == signature, (
        f"patch {patch}: {target} takes {seen['signature']} in {release}, the patch was written for {signature}"
    )
    assert seen["sha"] == sha, (
        f"patch {patch}: {target} changed in {release} (source sha256 {seen['sha']}, the patch was written for"
        f" {sha}): read the patch again against it, then pin the new hash"
    )


@pytest.mark.parametrize(("patch", "owner", "wanted"), NAMES, ids=[f"{p}-{o}" for p, o, _ in NAMES])
def test_the_names_a_patch_touches_are_there(patch: str, owner: str, wanted: str) -> None:
    seen = probed()["names"][f"{owner} {wanted}"]
    release = seen["release"]
    assert "missing" not in seen, f"patch {patch}: {owner} is gone in {release} ({seen.get('missing')})"
    assert seen["absent"] == [], f"patch {patch}: {owner} has no {', '.join(seen['absent'])} in {release}"


def test_h11_gives_a_chunked_bodys_trailer_fields_with_its_end() -> None:
    """`messages.relay_http1_trailers` takes them from h11's end of message."""
    buf = ReceiveBuffer()
    buf += b"3\r\nabc\r\n0\r\nx-checksum: 42\r\n\r\n"
    reader = ChunkedReader()
    read = [reader(buf), reader(buf)]
    assert isinstance(read[0], h11.Data) and bytes(read[0].data) == b"abc"
    assert isinstance(read[1], h11.EndOfMessage)
    assert [(bytes(n), bytes(v)) for n, v in read[1].headers] == [(b"x-checksum", b"42")]


def test_a_request_is_read_from_its_first_line_alone() -> None:
    """`head_bounds` reads a cut HTTP/1 head's first line as a request, and a cut HTTP/2 block's
    pseudo-header fields."""
    request = http1.read_request_head([b"POST http://api.example.com:8443/v1/chat HTTP/1.1\r\n"])
    assert (request.method, request.host, request.port, request.path) == ("POST", "api.example.com", 8443, "/v1/chat")
    pseudo = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"api.example.com"), (b":path", b"/v1")]
    host, port, method, scheme, authority, path, headers = parse_h2_request_headers(pseudo)
    assert (host, port, method, scheme, authority, path) == (
        "api.example.com",
        443,
        b"POST",
        b"https",
        b"api.example.com",
        b"/v1",
    )
    assert len(headers) == 0


def test_a_goaway_frame_is_written_apart_from_h2() -> None:
    """`drain` writes its GOAWAY frames with hyperframe, outside h2's state."""
    written = GoAwayFrame(stream_id=0, last_stream_id=2**31 - 1, error_code=0).serialize()
    assert written == b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x7f\xff\xff\xff\x00\x00\x00\x00"


def test_an_errored_stream_takes_every_event_silently() -> None:
    """`flows.stop_streams_their_taps_end` leaves a cut stream in mitmproxy's errored state, for
    what its upstream sends after the cut to be dropped."""
    stream = HttpStream(Context(tflow.tclient_conn(), options.Options()), 1)
    for event in (ResponseData(1, b"after the cut"), ResponseEndOfMessage(1)):
        assert list(stream.state_errored(event)) == []
