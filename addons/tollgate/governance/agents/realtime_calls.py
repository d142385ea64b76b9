"""`agents` on a Realtime session (OpenAI's Realtime API over WebSocket): each function call the
model makes decided before the client gets it. The session is one conversation, read as it goes
as a Responses request would be (its items are the Responses API's): the instructions and the
user's messages trusted, each `function_call_output` the client adds outside content (attributed
to its call's tool), the tools the session (`session.update`, `session.created`/`updated`) or a
response (`response.create`) declares giving the calls' schemas.

From the first server event that begins a function call (`response.output_item.added`, or
`conversation.item.added`/`created`, whose item is a `function_call`), that event and every
server event after it are held, in order, until each call begun is complete (its
`response.function_call_arguments.done`, `response.output_item.done` or `conversation.item.done`)
or its response is done. Then each call is decided: a refused call's item becomes, in every event
that carries it (held, or later), an assistant `message` of the same id whose text begins
`Tollgate refused the call to <tool>`; its argument events are taken out, and its text comes as
`response.content_part.added`, `response.output_text.delta`/`done` and `response.content_part.done`
right after its item's `added`. `response.done` carries the same message in its `output`. A call
never completed is refused as `unread`. A server event that cannot be read while holding, or one
that names a function call and cannot be read, is not sent: an `error` event takes its place.

Where the policy has a `data.tollgate.tools.deny` rule, it is asked about the held calls before
they are decided (`asking`): the proxy awaits its answers (`call_state.asked`), then takes what was
held (`resume`); the events that come meanwhile wait with them. A call begun meanwhile waits its
turn: once complete, the policy is asked about it too (`asking` again), and then all are decided.

Plain code, knowing nothing of mitmproxy: the proxy feeds each client event (`client`) and each
server event (`server`, which returns what goes to the client now)."""

from __future__ import annotations

import json
from typing import Any

from tollgate.formats.openai_responses.provenance import read_provenance
from tollgate.governance.agents.agents_settings import AgentsSettings
from tollgate.governance.agents.call_state import AgentsCall, ToolPolicy, decided_call, read_request, unasked
from tollgate.governance.agents.injection import InjectionSignals
from tollgate.governance.agents.responses_calls import responses_schemas
from tollgate.governance.agents.tool_decision import UNREAD, ToolCall, ToolDecision

# What Tollgate keeps of a session's conversation, in characters: beyond it, its calls are refused
# as `unread` (what it read is kept, and what it did not read would not taint).
MAX_CHARS = 32 * 1024 * 1024
UNREAD_EVENT = "Tollgate stopped a server event: its function call could not be read for `agents`."
_FUNCTION_CALL = b"function_call"
_SERVER_READ = (b'"session.created"', b'"session.updated"', b'"response.output_item.done"', b"\\u")
_CLIENT_READ = (b'"session.update"', b'"conversation.item.create"', b'"response.create"', b"\\u")
# The events whose `item` a call's may be, and those that end it.
_ITEM_EVENTS = (
    "response.output_item.added",
    "response.output_item.done",
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.done",
    "conversation.item.retrieved",
)
_ENDS = ("response.function_call_arguments.done", "response.output_item.done", "conversation.item.done")


class RealtimeCalls:
    def __init__(self, settings: AgentsSettings, signals: InjectionSignals, policy: ToolPolicy | None = None) -> None:
        self._settings, self._signals, self._policy = settings, signals, policy
        # The conversation whose held calls the policy is still to answer on (`asked`, then
        # `resume`): the events that come meanwhile are held too.
        self.asking: AgentsCall | None = None
        self._instructions: str | None = None
        self._tools: dict[str, dict[str, Any]] = {}  # by name
        self._items: list[dict[str, Any]] = []  # the conversation, as a Responses request's input
        self._chars = 0
        self._held: list[tuple[bytes, dict[str, Any] | None]] | None = None  # None: not holding
        self._response_done = False  # a response.done is among the held events: its calls will not grow
        # The policy's answers on the held calls so far (kept while a call begun meanwhile completes).
        self._answered: dict[Any, tuple[str, ...]] = {}
        self._calls: dict[str, list[Any]] = {}  # held calls by item id: [call_id, name, arguments, whole]
        self._refused: dict[str, str] = {}  # a refused call's item id → its refusal's text
        self._let_go: set[str] = set()  # the allowed calls' item ids: their later events go as they came
        self._given: set[str] = set()  # the call ids of the calls the client itself put in the conversation
        self._decisions: list[ToolDecision] = []
        self.state: AgentsCall | None = None  # the session's, for its record: every decision so far

    # ---- the client's events

    def client(self, content: bytes) -> None:
        """A client event, read for what the model reads (nothing of it is held here)."""
        if not any(name in content for name in _CLIENT_READ):
            return
        event = _object(content)
        kind = event.get("type") if event is not None else None
        if event is None:
            return
        if kind == "session.update":
            self._session(event.get("session"))
        elif kind == "conversation.item.create":
            self._add(event.get("item"))
        elif kind == "response.create":
            response = event.get("response")
            if isinstance(response, dict):
                self._session(response)
                for item in response.get("input") or ():
                    self._add(item)

    def _session(self, session: Any) -> None:
        if not isinstance(session, dict):
            return
        if isinstance(session.get("instructions"), str):
            self._instructions = session["instructions"]
        tools = session.get("tools")
        if isinstance(tools, list):
            self._tools = {t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}

    def _add(self, item: Any) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "function_call" and isinstance(item.get("call_id"), str):
            self._given.add(item["call_id"])  # the server's echo of it is no call of the model's
        self._chars += len(json.dumps(item, ensure_ascii=False))
        if self._chars <= MAX_CHARS:
            self._items.append(item)

    # ---- the server's events

    def server(self, content: bytes) -> list[bytes]:
        """A server event: what goes to the client now, in order (nothing while a call is held)."""
        if (
            self._held is None
            and _FUNCTION_CALL not in content
            and b"\\u" not in content
            and not self._names_refused(content)
        ):
            if any(name in content for name in _SERVER_READ):
                self._read_server(_object(content))
            return [content]
        event = _object(content)
        if event is None:
            if self._held is None and _FUNCTION_CALL not in content:
                return [content]
            return self._unread()
        self._read_server(event)
        kind = event.get("type")
        item = event.get("item") if kind in _ITEM_EVENTS else None
        begun = isinstance(item, dict) and item.get("type") == "function_call" and isinstance(item.get("id"), str)
        # The server's echo of a call the client itself put in the conversation is no call of the model's.
        echoed = isinstance(item, dict) and item.get("call_id") in self._given and str(kind).startswith("conversation.")
        begun = begun and not echoed
        if begun and item["id"] not in self._refused and item["id"] not in self._let_go:  # type: ignore[index]
            assert isinstance(item, dict)
            call = self._calls.setdefault(item["id"], [None, "", "", False])
            self._held = [] if self._held is None else self._held
            call[0] = item.get("call_id") if isinstance(item.get("call_id"), str) else call[0]
            call[1] = item["name"] if isinstance(item.get("name"), str) else call[1]
            if isinstance(item.get("arguments"), str) and item["arguments"]:
                call[2] = item["arguments"]
            if kind in _ENDS or item.get("status") == "completed":
                call[3] = True
        item_id = event.get("item_id")
        if kind == "response.function_call_arguments.done" and isinstance(item_id, str) and item_id in self._calls:
            arguments = event.get("arguments")
            self._calls[item_id][2] = arguments if isinstance(arguments, str) else "\x00"
            self._calls[item_id][3] = True
        if self._held is None:
            return self._rewritten(content, event)
        self._held.append((content, event))
        self._response_done = self._response_done or kind == "response.done"
        if self.asking is None and self._complete():
            return self._ready()
        return []

    def _complete(self) -> bool:
        """Whether every held call is complete, or its response done (it will not be)."""
        return self._response_done or all(call[3] for call in self._calls.values())

    def _ready(self) -> list[bytes]:
        """What is held, decided; or nothing yet, where the policy is to be asked first."""
        state = self._read()
        if self._policy is not None:
            state.policy = self._policy
            state.policy_answers.update(self._answered)
            held = (_call(c[0], c[1], c[2], c[3], self._chars) for c in self._calls.values())
            if unasked(held, state):
                self.asking = state
                return []
        return self._release(state)

    def resume(self) -> list[bytes]:
        """What was held once the policy answered on its calls (`asking`), decided. A call begun
        meanwhile waits its turn: until it is complete, then until the policy has answered on it
        (`asking` again)."""
        state, self.asking = self.asking, None
        if state is None or self._held is None:
            return []
        self._answered.update(state.policy_answers)
        return self._ready() if self._complete() else []

    def _names_refused(self, content: bytes) -> bool:
        """Whether an event may carry a refused call's item (then it is read, to be rewritten)."""
        if not self._refused:
            return False
        return b'"response.done"' in content or b"\\u" in content or any(i.encode() in content for i in self._refused)

    def _read_server(self, event: dict[str, Any] | None) -> None:
        """What the server says of the session and the model's own output, for the conversation."""
        if event is None:
            return
        kind = event.get("type")
        if kind in ("session.created", "session.updated"):
            self._session(event.get("session"))
        elif kind == "response.output_item.done":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") != "function_call":
                self._add(item)

    def _unread(self) -> list[bytes]:
        """A server event that cannot be read where a call may be in it: not sent; what is held is
        decided on what came, and an error event takes the unread one's place."""
        self._decisions.append(decided_call(ToolCall("unknown", UNREAD), self._read()))
        self._record()
        out = self._release(self.asking or self._read()) if self._held is not None else []
        self.asking = None
        error = {
            "type": "error",
            "event_id": "tollgate_unread",
            "error": {"type": "server_error", "message": UNREAD_EVENT},
        }
        return [*out, json.dumps(error).encode()]

    def end(self) -> None:
        """The session ended while holding: nothing held goes (there is no one to send it to)."""
        self._held, self._calls, self.asking, self._response_done, self._answered = None, {}, None, False, {}

    def _read(self) -> AgentsCall:
        """The conversation so far, read as a Responses request would be."""
        body: dict[str, Any] = {"input": self._items, "tools": list(self._tools.values())}
        if self._instructions is not None:
            body["instructions"] = self._instructions
        return read_request(read_provenance(body), responses_schemas(body), self._settings, self._signals)

    def _release(self, state: AgentsCall) -> list[bytes]:
        held, self._held, self._response_done, self._answered = self._held or [], None, False, {}
        calls, self._calls = self._calls, {}
        for item_id, (call_id, name, arguments, whole) in calls.items():
            decision = decided_call(_call(call_id, name, arguments, whole, self._chars), state)
            self._decisions.append(decision)
            if decision.refusal is not None:
                self._refused[item_id] = decision.refusal
            else:
                self._let_go.add(item_id)
            if decision.refusal is None and whole:
                self._add({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
        self._record()
        out: list[bytes] = []
        for content, event in held:
            out += self._rewritten(content, event)
        return out

    def _record(self) -> None:
        state = self._read()
        state.decisions = list(self._decisions)
        self.state = state

    def _rewritten(self, content: bytes, event: dict[str, Any] | None) -> list[bytes]:
        """An event as the client gets it: a refused call's item made its refusal's message."""
        if event is None or not self._refused:
            return [content]
        kind = event.get("type")
        item = event.get("item")
        item_id = item.get("id") if isinstance(item, dict) else event.get("item_id")
        if kind == "response.done":
            return [self._done(content, event)]
        if not isinstance(item_id, str) or item_id not in self._refused:
            return [content]
        text = self._refused[item_id]
        if kind in ("response.function_call_arguments.delta", "response.function_call_arguments.done"):
            return []
        if kind not in _ITEM_EVENTS or not isinstance(item, dict):
            return [content]
        status = "in_progress" if kind in ("response.output_item.added", "conversation.item.added") else "completed"
        out = [_json({**event, "item": _message(item, text, status)})]
        if kind == "response.output_item.added":
            out += _text_events(event, item_id, text)
        return out

    def _done(self, content: bytes, event: dict[str, Any]) -> bytes:
        response = event.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        if not isinstance(output, list):
            return content
        changed = False
        written = []
        for item in output:
            refused = isinstance(item, dict) and item.get("id") in self._refused
            written.append(_message(item, self._refused[item["id"]], "completed") if refused else item)
            changed = changed or refused
        if not changed:
            return content
        assert isinstance(response, dict)
        return _json({**event, "response": {**response, "output": written}})


def _call(call_id: str | None, name: str, arguments: str, whole: bool, chars: int) -> ToolCall:
    """A held call as decided: one not complete, or of a conversation too long to keep, unread."""
    return ToolCall.from_json(name or "unknown", arguments if whole and chars <= MAX_CHARS else "\x00", call_id)


def _message(item: dict[str, Any], text: str, status: str) -> dict[str, Any]:
    """A refused call's item as an assistant message of the same id."""
    content = [{"type": "output_text", "text": text}] if status == "completed" else []
    out: dict[str, Any] = {
        "id": item["id"],
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }
    if "object" in item:
        out["object"] = item["object"]
    return out


def _text_events(added: dict[str, Any], item_id: str, text: str) -> list[bytes]:
    """The events that write a refusal's text, after its item's `response.output_item.added`."""
    base: dict[str, Any] = {k: added[k] for k in ("response_id", "output_index") if k in added}
    place: dict[str, Any] = {**base, "item_id": item_id, "content_index": 0}
    event_id = added.get("event_id") if isinstance(added.get("event_id"), str) else "event"
    names: list[tuple[str, dict[str, Any]]] = [
        ("response.content_part.added", {"part": {"type": "text", "text": ""}}),
        ("response.output_text.delta", {"delta": text}),
        ("response.output_text.done", {"text": text}),
        ("response.content_part.done", {"part": {"type": "text", "text": text}}),
    ]
    return [
        _json({"type": kind, "event_id": f"{event_id}_tollgate_{n}", **place, **more})
        for n, (kind, more) in enumerate(names)
    ]


def _object(content: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
