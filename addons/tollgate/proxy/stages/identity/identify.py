"""Who is calling: the proxy login, a virtual key, a JWT, or anonymous; 401 otherwise. For an LLM
call (in the provider's shape) and an MCP server's request (as JSON-RPC errors) alike."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from weakref import WeakKeyDictionary

from mitmproxy import http

from tollgate.calls.call import Call
from tollgate.configuration.runtime import Loaded
from tollgate.credentials.sigv4 import UNKNOWN_KEY, SignatureError, signing_key_id
from tollgate.formats.bodies.raw_headers import decoded, header_index
from tollgate.formats.refusals import BAD_REQUEST, INVALID_SIGNATURE, TENANT_DENIED, UNAUTHENTICATED
from tollgate.formats.request_facts import Classification
from tollgate.governance.identity.clients import Expired, Identified, Rejected, Token
from tollgate.governance.identity.jwt_identity import (
    MALFORMED,
    UNKNOWN_ISSUER,
    JwtIdentity,
    JwtRejected,
    looks_like_jwt,
)
from tollgate.governance.mcp.mcp_exchange import McpExchange
from tollgate.governance.mcp.mcp_sessions import session_owner
from tollgate.governance.routing.redaction import credential_positions
from tollgate.governance.subscriptions.asked_accounts import AskedAccounts
from tollgate.governance.subscriptions.plan import (
    PlanCall,
    plan_call,
    plan_caller,
    plan_caller_named,
    plan_only_refusal,
)
from tollgate.providers.base import Provider
from tollgate.providers.credentials import Presented
from tollgate.providers.plans import PlanReader
from tollgate.proxy.flows import (
    bearer_token,
    call_of,
    credentials_of,
    provider_of,
    refuse,
    refuse_mcp,
    request_parts,
)
from tollgate.proxy.state import Shared

PROXYAUTH = "proxyauth"
UNKNOWN_KEY_REASON = "unknown or missing API key"  # the audit's deny reason
UNKNOWN_KEY_MESSAGE = "Tollgate: unknown or missing API key. Use the virtual key Tollgate's operator gave you."


def forget_proxy_password(flow: http.HTTPFlow) -> None:
    """mitmproxy's proxyauth keeps (user, password) in the flow's metadata, which saved flows carry."""
    login = flow.metadata.get(PROXYAUTH)
    if isinstance(login, (tuple, list)) and len(login) == 2 and login[1]:
        flow.metadata[PROXYAUTH] = (login[0], "")


class Identify:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        # With `proxyauth=any` the login's password is a JWT to verify. It leaves the flow at
        # `requestheaders` (saved flows carry the metadata) and waits here until `handle` judges it.
        self._passwords: WeakKeyDictionary[http.HTTPFlow, str] = WeakKeyDictionary()

    def forget_proxy_password(self, flow: http.HTTPFlow) -> None:
        """At `http_connect` and `requestheaders`: the login's password out of the flow, kept aside
        for `handle` when Tollgate judges logins. mitmproxy puts it back into each request's flow
        from the connection's CONNECT, so each request is judged."""
        if self.shared.logins_unchecked and flow.request.method != "CONNECT":
            login = flow.metadata.get(PROXYAUTH)
            if isinstance(login, (tuple, list)) and len(login) == 2 and isinstance(login[1], str):
                self._passwords[flow] = login[1]
        forget_proxy_password(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        """After the call steps: a password `handle` did not judge (the call was refused before) goes."""
        if self._passwords:  # only ever filled when Tollgate judges logins
            self._passwords.pop(flow, None)

    def handle(self, flow: http.HTTPFlow, call: Call) -> Awaitable[None] | None:
        provider = provider_of(call)
        credentials = credentials_of(call, flow.request, provider)
        # Every credential the request carries, for any provider: Redact shows where they were.
        call.caller.credential_positions = credential_positions(
            call.request.headers, flow.request.query if b"?" in flow.request.data.path else ()
        )
        login = flow.metadata.get(PROXYAUTH)
        signed_with = None
        judged = self.shared.logins_unchecked and login is not None
        if not judged and _login_name(login) is None and provider.credentials.check.verifies_callers:
            try:
                verified = provider.credentials.check.verify_caller(
                    request_parts(flow.request, call), call.loaded.directory.aws_secrets
                )
            except SignatureError as e:
                call.verdict.deny_reasons = (str(e),)
                refuse(flow, call, UNAUTHENTICATED if e.code == UNKNOWN_KEY else INVALID_SIGNATURE, str(e))
                return None
            if verified is not None:
                call.request.body_sha256 = verified.payload_hash
                signed_with = verified.key_id
        presented = provider.credentials.caller.presented(*credentials)
        plan = None
        if provider.plan is not None:  # one check on a keyed call: its provider takes no plans
            plan = plan_call(provider, presented, call.request.headers, call.host, call.loaded.directory)
        if call.classification.plan_only and (why := plan_only_refusal(provider, call.classification, plan)):
            return self._refuse_plan_only(flow, call, why, presented, plan, signed_with)
        if plan is not None:
            return self._subscriber(flow, call, provider, plan)
        outcome = self.caller(flow, call.loaded, presented, signed_with)
        if isinstance(outcome, (Identified, Rejected)):
            _apply(flow, call, outcome)
            return None
        return _apply_later(flow, call, outcome)

    def _refuse_plan_only(
        self,
        flow: http.HTTPFlow,
        call: Call,
        why: str,
        presented: list[Presented],
        plan: PlanCall | None,
        signed_with: str | None,
    ) -> Awaitable[None] | None:
        """A path only a plan's own token takes, called with another credential
        (`plan_only_refusal`, from the plan call read once): refused (400) as a request Tollgate
        cannot read exactly, nothing of it read as a call; its caller named for its record."""
        call.classified(Classification())
        call.answer.error = f"bad request: {why}"
        refuse(flow, call, BAD_REQUEST, f"Tollgate cannot read this request exactly and did not forward it: {why}.")
        return self._named(flow, call, presented, plan, signed_with)

    def _subscriber(
        self, flow: http.HTTPFlow, call: Call, provider: Provider, plan: PlanCall
    ) -> Awaitable[None] | None:
        """A call made with a plan's token (auth `subscription`), read once (`plan_call`): what its
        request tells of its account and what the call keeps of the token, on its caller; where its
        plan reader says to ask (`PlanReader.asks_account`), the account's e-mail (asked of the
        token information endpoint, awaited where not yet known); then its caller (`_plan_caller`)."""
        who = call.caller
        who.subscription, who.plan_token = plan.subscription, plan.kept
        who.auth = "subscription"  # refused or not: the audit says a plan's token came
        subscriptions = call.loaded.config.subscriptions
        reader = provider.plan
        if reader is not None and reader.asks_account and subscriptions.allow:  # else refused: not asked
            email = self.shared.asked_accounts.email(plan.token, *subscriptions.account_endpoint(provider.name))
            if not isinstance(email, (str, type(None))):
                return self._asked_account_later(flow, call, reader, email, plan.foreign)
            _asked_account(call, reader, email, self.shared.asked_accounts)
        return self._plan_caller(flow, call, plan.foreign)

    async def _asked_account_later(
        self, flow: http.HTTPFlow, call: Call, reader: PlanReader, email: Awaitable[str | None], foreign: str | None
    ) -> None:
        _asked_account(call, reader, await email, self.shared.asked_accounts)
        outcome = self._plan_caller(flow, call, foreign)
        if outcome is not None:
            await outcome

    def _plan_caller(self, flow: http.HTTPFlow, call: Call, foreign: str | None) -> Awaitable[None] | None:
        """A plan call's caller, as governance names it (`plan_caller`) from the proxy login
        (`_login`), and its refusal (401; 403 tenant_denied whoever calls), applied."""
        login = self._login(flow, call.loaded)
        if login is None or isinstance(login, (str, Identified, Rejected)):
            _apply_plan(flow, call, login, foreign)
            return None
        return _apply_plan_later(flow, call, login, foreign)

    def _login(
        self, flow: http.HTTPFlow, loaded: Loaded
    ) -> str | Identified | Rejected | Awaitable[Identified | Rejected] | None:
        """The proxy login a call comes with: its user name, or where Tollgate judges logins what
        the JWT it carries names (awaited when its keys must be fetched); None: no login."""
        login = flow.metadata.get(PROXYAUTH)
        if self.shared.logins_unchecked and login is not None:
            return _by_token(loaded, self._passwords.pop(flow, ""), login=True)
        return _login_name(login)

    def refused(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """At `requestheaders` and `request`, after the call steps: a call Tollgate refused before
        this stage looked at it (a body it cannot read: 400; a web app's path: `Classify`) still
        has its caller named, as far as its credentials tell, for its record: the refusal stands
        whoever calls, and a credential that names no one leaves it anonymous."""
        call = call_of(flow)
        if call is None or flow.response is None or call.caller.credential_positions is not None:
            return None
        if call.loaded is None:  # no configuration: no one to name
            return None
        request, provider = flow.request, provider_of(call)
        index = call.request.headers or header_index(request.headers.fields)
        query = request.query if b"?" in request.data.path else {}
        call.caller.credential_positions = credential_positions(index, query)
        presented = provider.credentials.caller.presented(
            decoded(index, provider.credentials.caller.header_positions), query
        )
        plan = plan_call(provider, presented, index, call.host, call.loaded.directory)
        signed_with = self._signed_with(flow, call, provider) if plan is None else None
        return self._named(flow, call, presented, plan, signed_with)

    def _named(
        self,
        flow: http.HTTPFlow,
        call: Call,
        presented: list[Presented],
        plan: PlanCall | None,
        signed_with: str | None,
    ) -> Awaitable[None] | None:
        """A refused call's caller named, as far as its credentials tell: the plan call's (its
        account's holder), else the one they name; the refusal stands whoever calls."""
        if plan is not None:
            call.caller.subscription = plan.subscription
            call.caller.auth = "subscription"
            login = self._login(flow, call.loaded)
            if login is None or isinstance(login, (str, Identified, Rejected)):
                _name_plan(call, login)
                return None
            return _name_plan_later(call, login)
        outcome = self.caller(flow, call.loaded, presented, signed_with)
        if isinstance(outcome, (Identified, Rejected)):
            _name(call, outcome)
            return None
        return _name_later(call, outcome)

    @staticmethod
    def _signed_with(flow: http.HTTPFlow, call: Call, provider: Provider) -> str | None:
        """The virtual AWS key a refused call's signature holds for, if it does (a body not read
        yet, at its headers, is not judged)."""
        if not provider.credentials.check.verifies_callers or _login_name(flow.metadata.get(PROXYAUTH)) is not None:
            return None
        if flow.request.raw_content is None:
            return None
        try:
            verified = provider.credentials.check.verify_caller(
                request_parts(flow.request, call), call.loaded.directory.aws_secrets
            )
        except SignatureError:
            return None
        return verified.key_id if verified is not None else None

    def mcp(self, flow: http.HTTPFlow, exchange: McpExchange) -> Awaitable[None] | None:
        """A call step of an MCP server's request: its caller, by the proxy login or the bearer
        token it presents to the server, as `handle` finds an LLM call's; 401 otherwise. Who owns
        the sessions it opens follows (`session_owner`)."""
        token = bearer_token(flow.request)
        presented = [Presented(token, "authorization")] if token else []
        loaded = exchange.loaded
        assert isinstance(loaded, Loaded)  # what `Mcp.request` set it to
        outcome = self.caller(flow, loaded, presented)
        if isinstance(outcome, (Identified, Rejected)):
            _apply_mcp(flow, exchange, outcome)
            return None
        return _apply_mcp_later(flow, exchange, outcome)

    def caller(
        self, flow: http.HTTPFlow, loaded: Loaded, presented: Iterable[Presented], signed_with: str | None = None
    ) -> Identified | Rejected | Awaitable[Identified | Rejected]:
        """Who calls, by the proxy login, the credentials `presented` (a virtual key or a JWT) or
        a verified signature's key (`signed_with`): at once, or awaited when a JWT's keys must be
        fetched. For an LLM call (`handle`) and an MCP server's (`mcp`) alike."""
        login = flow.metadata.get(PROXYAUTH)
        if self.shared.logins_unchecked and login is not None:
            # mitmproxy took any login: the user name is whatever the caller claims. Only a JWT
            # of a configured issuer as the password says who calls.
            return _by_token(loaded, self._passwords.pop(flow, ""), login=True)
        caller = loaded.directory.identify(_login_name(login), presented, signed_with)
        if isinstance(caller, Token):
            return _by_token(loaded, caller.value, login=False)
        if isinstance(caller, Expired):  # told as an unknown key is; the audit says whose, and since when
            return Rejected(caller.reason, UNKNOWN_KEY_MESSAGE)
        if caller is None:
            return Rejected(UNKNOWN_KEY_REASON, UNKNOWN_KEY_MESSAGE)
        return Identified(
            caller.name, caller.groups, caller.auth, key_expires=caller.key_expires, key_sha256=caller.key_sha256
        )

    @staticmethod
    def unexpired(flow: http.HTTPFlow, call: Call) -> None:
        """A call step for the calls of a session identified once (a Responses or Realtime
        WebSocket's responses): the virtual key it was opened with is still the client's in the
        configuration now in force (not removed by a reload) and has not expired since; else 401,
        as at the upgrade."""
        who = call.caller
        if who.key_sha256 is not None:
            reason = call.loaded.directory.key_refusal(who.key_sha256, who.client, time.time())
        elif who.key_expires is not None and time.time() >= who.key_expires:
            reason = Expired(who.client or "", who.key_expires).reason
        else:
            return
        if reason is None:
            return
        call.verdict.deny_reasons = (reason,)
        refuse(flow, call, UNAUTHENTICATED, UNKNOWN_KEY_MESSAGE)

    def own_credential_only(self, flow: http.HTTPFlow, call: Call) -> None:
        """A call outside the model API (`Classification.passthrough`) goes with the caller's own
        credential, whoever calls: one of Tollgate's virtual credentials (a virtual key or AWS
        key, a JWT of its issuers) is refused there, since no real one takes its place."""
        request = flow.request
        query = request.query if b"?" in request.data.path else ()
        call.caller.credential_positions = credential_positions(call.request.headers, query)
        if not self._presents_virtual(call, request):
            return
        call.verdict.deny_reasons = ("a virtual credential outside the model API",)
        refuse(
            flow,
            call,
            UNAUTHENTICATED,
            f"Tollgate: {call.host}{call.path} is outside the model API Tollgate governs: call it with your own"
            " credentials, not a virtual one.",
        )

    @staticmethod
    def _presents_virtual(call: Call, request: http.Request) -> bool:
        directory = call.loaded.directory
        key_id = signing_key_id(call.request.headers, request.query if b"?" in request.data.path else {})
        if key_id is not None and directory.is_virtual_aws_key(key_id):
            return True
        provider = provider_of(call)
        return any(
            directory.is_virtual_key(p.value) or (directory.takes_jwts and looks_like_jwt(p.value))
            for p in provider.credentials.caller.presented(*credentials_of(call, request, provider))
        )


def _login_name(login: object) -> str | None:
    return login[0] if isinstance(login, (tuple, list)) and login and login[0] else None


def _by_token(loaded: Loaded, token: str, login: bool) -> Identified | Rejected | Awaitable[Identified | Rejected]:
    """The caller a JWT names, verified: at once when its keys are known, else awaited."""
    verifier = loaded.jwt
    try:
        if not looks_like_jwt(token):
            raise JwtRejected(MALFORMED, ours=False)
        if not verifier:
            raise JwtRejected(UNKNOWN_ISSUER, ours=False)
        outcome = verifier.verify(token)
    except JwtRejected as e:
        return _rejected(loaded, e, login)
    if isinstance(outcome, JwtIdentity):
        return _identified(outcome)
    return _verified_later(loaded, outcome, login)


async def _verified_later(loaded: Loaded, outcome: Awaitable[JwtIdentity], login: bool) -> Identified | Rejected:
    try:
        identity = await outcome
    except JwtRejected as e:
        return _rejected(loaded, e, login)
    return _identified(identity)


def _rejected(loaded: Loaded, e: JwtRejected, login: bool) -> Identified | Rejected:
    if not e.ours and not login and loaded.config.anonymous_allowed:
        return ANONYMOUS  # no token of Tollgate's issuers: an anonymous caller's own credential, perhaps
    return Rejected(e.reason, e.message)


def _identified(identity: JwtIdentity) -> Identified:
    return Identified(identity.client, identity.groups, "jwt", identity)


ANONYMOUS = Identified(None, (), "anonymous")


def _apply(flow: http.HTTPFlow, call: Call, outcome: Identified | Rejected) -> None:
    if isinstance(outcome, Rejected):
        call.verdict.deny_reasons = (outcome.reason,)
        refuse(flow, call, UNAUTHENTICATED, outcome.message)
        return
    who = call.caller
    who.client, who.groups, who.auth = outcome.client, outcome.groups, outcome.auth
    if outcome.identity is not None:
        who.identity = outcome.identity
    if outcome.key_expires is not None:
        who.key_expires = outcome.key_expires
    if outcome.key_sha256 is not None:
        who.key_sha256 = outcome.key_sha256


async def _apply_later(flow: http.HTTPFlow, call: Call, outcome: Awaitable[Identified | Rejected]) -> None:
    _apply(flow, call, await outcome)


def _name(call: Call, outcome: Identified | Rejected) -> None:
    """A refused call's caller, named where the outcome names one; its refusal stands."""
    if isinstance(outcome, Rejected):
        return
    who = call.caller
    who.client, who.groups = outcome.client, outcome.groups
    if who.subscription is None:
        who.auth = outcome.auth
    if outcome.identity is not None:
        who.identity = outcome.identity


async def _name_later(call: Call, outcome: Awaitable[Identified | Rejected]) -> None:
    _name(call, await outcome)


def _apply_plan(
    flow: http.HTTPFlow, call: Call, login: str | Identified | Rejected | None, foreign: str | None
) -> None:
    """A plan call's caller and refusal, as governance decides them (`plan_caller`), applied: the
    caller as `_apply` sets any caller's (401 where no one may make it), then 403 tenant_denied
    where it is refused whoever makes it."""
    plan, loaded = call.caller.subscription, call.loaded
    assert plan is not None
    decided = plan_caller(plan, foreign, login, loaded.directory, loaded.config.subscriptions)
    _apply(flow, call, decided.caller)
    if flow.response is None and decided.refusal is not None:
        reason, message = decided.refusal
        call.verdict.deny_reasons = (reason,)
        refuse(flow, call, TENANT_DENIED, message)


def _name_plan(call: Call, login: str | Identified | Rejected | None) -> None:
    """A refused plan call's caller, named as governance names it (`plan_caller_named`)."""
    plan, loaded = call.caller.subscription, call.loaded
    assert plan is not None
    _name(call, plan_caller_named(plan, login, loaded.directory))


async def _name_plan_later(call: Call, login: Awaitable[Identified | Rejected]) -> None:
    _name_plan(call, await login)


def _asked_account(call: Call, reader: PlanReader, email: str | None, accounts: AskedAccounts) -> None:
    """A plan call whose token's account was asked about: the account's e-mail, the plan last
    named for the token, and the tenant its body names (as its plan reader reads it)."""
    plan, kept = call.caller.subscription, call.caller.plan_token
    assert plan is not None and kept is not None and kept.sha256 is not None
    tenant = reader.tenant_in_body(call.request.body, call.classification.service)
    call.caller.subscription = plan.with_asked_account(email, accounts.plan(kept.sha256), tenant)


async def _apply_plan_later(
    flow: http.HTTPFlow, call: Call, login: Awaitable[Identified | Rejected], foreign: str | None
) -> None:
    _apply_plan(flow, call, await login, foreign)


def _apply_mcp(flow: http.HTTPFlow, exchange: McpExchange, outcome: Identified | Rejected) -> None:
    if isinstance(outcome, Rejected):
        exchange.deny_reasons = (outcome.reason,)
        refuse_mcp(flow, exchange, 401, UNAUTHENTICATED, outcome.message)
        return
    exchange.caller.client, exchange.caller.groups, exchange.caller.auth = outcome.client, outcome.groups, outcome.auth
    exchange.caller.identity = outcome.identity
    # An anonymous caller's sessions are those of the credential it presents to the server.
    own = bearer_token(flow.request) if outcome.auth == "anonymous" else None
    exchange.caller.owner = session_owner(outcome.client, own)


async def _apply_mcp_later(
    flow: http.HTTPFlow, exchange: McpExchange, outcome: Awaitable[Identified | Rejected]
) -> None:
    _apply_mcp(flow, exchange, await outcome)
