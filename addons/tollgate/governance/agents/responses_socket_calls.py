"""`agents` on a response over the Responses API's WebSocket (`wss://…/v1/responses`): its events,
one a message, are the events of the Responses stream over HTTP, so they are decided by the same
`HeldResponsesCalls`, each message fed as one server-sent event and what goes on read back as
messages. From an agent's call's `response.output_item.added`, its events and every event after
it are held, in order, until each call begun has its `response.output_item.done`; then a refused
call's events become its refusal message's, and `response.completed` (`incomplete`, `failed`)
carries the same replacement. The response's last event (or an `error`) ends its stream: a call
held then without its done item is refused as `unread`.

Where the policy decides tool calls, the events wait until it has answered (`asking`: the proxy
awaits `call_state.asked`, then takes `resume`). An event that is no JSON object, or one too large
to read, is not sent: what was held is not either, and an `error` event takes their place.

Plain code, knowing nothing of mitmproxy: the proxy feeds each of the response's server events
(`message`), and takes what goes to the client now."""

from __future__ import annotations

from typing import Any

from tollgate.formats.bodies.json_codec import encode_json, parse_json
from tollgate.governance.agents.call_state import AgentsCall
from tollgate.governance.agents.held_events import event_object
from tollgate.governance.agents.responses_stream import HeldResponsesCalls

# The events after which no more of a response comes: its stream's end.
ENDS = frozenset(("response.completed", "response.incomplete", "response.failed", "error"))
UNREAD_EVENT = "Tollgate stopped a response: an event of it could not be read for `agents`."


class ResponsesSocketCalls:
    def __init__(self, state: AgentsCall, lane: str | None = None) -> None:
        self.state = state
        self.lane = lane  # the response's `stream_id`, written into the events Tollgate makes
        self._held = HeldResponsesCalls(state)
        self.ended = False  # its last event came (or it failed): nothing more is read
        self._failed = False

    @property
    def asking(self) -> bool:
        """Whether the policy is to answer on a held call before anything more goes."""
        return bool(self.state.asking)

    def message(self, content: bytes) -> list[bytes]:
        """A server event of the response: the events that go to the client now, in order."""
        if self._failed:
            return []
        obj = parse_json(content)
        if obj is None:
            return self.fail()
        if b"\n" in content or b"\r" in content:  # white space between JSON's tokens: one line
            content = encode_json(obj)
        out = self._held.feed(b"data: " + content + b"\n\n")
        if obj.get("type") in ENDS:
            self.ended = True
            out += self._held.at_end()
            if not self.asking:
                out += self._held.flush()
        return self._messages(out)

    def resume(self) -> list[bytes]:
        """Once the policy has answered (`asked`): what was held goes, decided, if it may."""
        if self._failed:
            return []
        out = self._held.feed(b"")
        if self.ended and not self.asking:
            out += self._held.flush()
        return self._messages(out)

    def end(self) -> list[bytes]:
        """The response ends without its last event (the WebSocket closed): what is held, decided
        on what came."""
        if self._failed or self.ended:
            return []
        self.ended = True
        return self._messages(self._held.flush())

    def fail(self) -> list[bytes]:
        """The response cannot be decided: it stops here (nothing held goes), an `error` event in its place."""
        self._failed = self.ended = True
        self.state.asking.clear()
        event: dict[str, Any] = {"type": "error", "error": {"type": "server_error", "message": UNREAD_EVENT}}
        if self.lane is not None:
            event["stream_id"] = self.lane
        return [encode_json(event)]

    def _messages(self, out: bytes) -> list[bytes]:
        """The server-sent events `HeldResponsesCalls` let go, as the WebSocket's messages: their
        data, as it came where unchanged; the events Tollgate wrote carry the response's lane."""
        messages = []
        for block in out.split(b"\n\n"):
            if not block:
                continue
            obj = event_object(block + b"\n\n")
            if obj is None:
                continue
            if "type" not in obj and "error" in obj:  # the stream's error event, in the socket's shape
                self._failed = self.ended = True
                obj = {"type": "error", **obj}
            if block.startswith(b"data: ") and b"\n" not in block:  # fed as it came, let go unchanged
                messages.append(block[6:])
                continue
            if self.lane is not None and "stream_id" not in obj:
                obj["stream_id"] = self.lane
            messages.append(encode_json(obj))
        return messages
