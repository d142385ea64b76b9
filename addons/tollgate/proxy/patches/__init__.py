"""What mitmproxy 12 cannot do through its addon API, and Tollgate needs, patched into its layers: a
call's flow (`http_stream.py`: the error hook's response served, a flow its client ended, a request gone
upstream, a flow that waits too long ended, a streamed response's last bytes sent, one its tap
stopped ended, a large piece of one read apart), what a message carries (`messages.py`: HTTP/1
trailers, a WebSocket message's size), connections ended too soon or never (`connections.py`), a
message's head bounded as it is read (`head_bounds.py`), and the drain (`connection_drain.py`), a request sent
again before its answer began (`resend.py`), mitmdump's line for a call left to Tollgate's
(`console.py`), and mitmproxy's hook dispatch made cheaper (`dispatch.py`). Each patch is a
function that installs it once; the stages call them through this package.

Each module says at its top what of mitmproxy it replaces or wraps, and what mitmproxy does
without it; `tests/unit/proxy/patches/test_what_mitmproxy_does.py` pins the signature and source
of each, and the names each touches, so that a mitmproxy release that changes them fails a test
that names the patch."""

from tollgate.proxy.patches.connection_drain import CloseInjected, begin_drain, close_websocket, drain_connections
from tollgate.proxy.patches.connections import (
    close_connections_cancelled_while_waiting,
    finish_streams_after_a_clients_goaway,
)
from tollgate.proxy.patches.console import calls_shown, leave_calls_to_their_line, refused_connection
from tollgate.proxy.patches.dispatch import cheaper_hook_dispatch
from tollgate.proxy.patches.head_bounds import bound_message_heads, cut_head, head_was_cut
from tollgate.proxy.patches.http_stream import (
    AnswerPieceHook,
    EndIfWaiting,
    ReadsApart,
    bound_responses_read_whole,
    end_flows_waiting_for_response,
    end_response_with,
    ended_by_client,
    finish_streamed_responses,
    note_flows_ended_by_client,
    note_requests_sent,
    read_large_pieces_apart,
    read_whole_up_to,
    serve_responses_set_by_error_hook,
    stop_streams_their_taps_end,
)
from tollgate.proxy.patches.messages import (
    MESSAGE_TOO_BIG,
    bound_websocket_messages,
    closed_for_a_large_message,
    relay_http1_trailers,
    relay_injected_messages_apart,
)
from tollgate.proxy.patches.resend import (
    AttemptFailedHook,
    may_resend,
    no_more_resends,
    resend,
    resend_failed_attempts,
    resends,
)

__all__ = [
    "MESSAGE_TOO_BIG",
    "AnswerPieceHook",
    "AttemptFailedHook",
    "CloseInjected",
    "EndIfWaiting",
    "ReadsApart",
    "begin_drain",
    "bound_message_heads",
    "bound_responses_read_whole",
    "bound_websocket_messages",
    "calls_shown",
    "cheaper_hook_dispatch",
    "close_connections_cancelled_while_waiting",
    "close_websocket",
    "closed_for_a_large_message",
    "cut_head",
    "drain_connections",
    "end_flows_waiting_for_response",
    "end_response_with",
    "ended_by_client",
    "finish_streamed_responses",
    "finish_streams_after_a_clients_goaway",
    "head_was_cut",
    "leave_calls_to_their_line",
    "may_resend",
    "no_more_resends",
    "note_flows_ended_by_client",
    "note_requests_sent",
    "read_large_pieces_apart",
    "read_whole_up_to",
    "refused_connection",
    "relay_http1_trailers",
    "relay_injected_messages_apart",
    "resend",
    "resend_failed_attempts",
    "resends",
    "serve_responses_set_by_error_hook",
    "stop_streams_their_taps_end",
]
