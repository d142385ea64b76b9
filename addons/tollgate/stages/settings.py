"""The `tollgate_config` option, and the mitmproxy options Tollgate depends on."""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions

from .. import compat
from ..auditlog import AuditLog
from ..config import PROVIDER_NAMES, ConfigError, load_config
from ..policy import Policy, PolicyError
from ..providers import allow_hosts
from ..sigv4 import credential_source, load_botocore
from .shared import Shared

logger = logging.getLogger(__name__)

# mitmweb's flow list column that shows each call's summary (`Call.summary`, set as the flow's comment).
COMMENT_COLUMN = "comment"


class Settings:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def load(self, loader) -> None:
        # Declared as str: mitmproxy silently drops a script whose typed option gets a bad value.
        loader.add_option(
            "tollgate_config", str, "", "Path of Tollgate's YAML configuration; empty: built-in defaults."
        )
        compat.serve_responses_set_by_error_hook()

    def configure(self, updated: set[str]) -> None:
        if "tollgate_config" in updated:
            try:
                config = load_config(ctx.options.tollgate_config)
            except ConfigError as e:
                raise exceptions.OptionsError(f"Tollgate configuration: {e}") from None
            try:
                policy = Policy(config.policy.rego, config.policy.timeout) if config.policy.rego else None
            except PolicyError as e:
                raise exceptions.OptionsError(f"Tollgate configuration: policy.rego: {e}") from None
            if config.mentions_bedrock:
                load_botocore()
            try:
                aws = credential_source(config.providers.bedrock.credentials)
            except ValueError as e:
                raise exceptions.OptionsError(f"Tollgate configuration: providers.bedrock.credentials: {e}") from None
            try:
                audit = AuditLog(config.audit.path)
            except OSError as e:
                raise exceptions.OptionsError(
                    f"Tollgate configuration: audit.path: cannot open {config.audit.path}: {e.strerror}"
                ) from None
            self.shared.apply(config, audit, policy, aws)
            if config.anonymous_allowed and any(config.providers.get(n).keys for n in PROVIDER_NAMES):
                logger.warning(
                    "Tollgate: anonymous callers are allowed and provider keys are configured: anyone who can"
                    " reach this proxy calls with those keys (set clients, or allow_anonymous: false)"
                )
            logger.info(
                f"Tollgate: {len(config.clients)} client(s), anonymous callers "
                f"{'allowed' if config.anonymous_allowed else 'refused'}, audit to {config.audit.path}"
            )
        self._require_proxy_options()

    def running(self) -> None:
        # At start-up rather than in `configure`: a user who later picks mitmweb's default columns
        # in its options gets them as picked. `web_columns` exists only under mitmweb, and by now
        # holds what the user set on the command line or in config.yaml.
        if "web_columns" in ctx.options and not ctx.options.has_changed("web_columns"):
            columns = list(ctx.options.web_columns)
            if COMMENT_COLUMN not in columns:
                ctx.options.update(web_columns=[*columns, COMMENT_COLUMN])

    def _require_proxy_options(self) -> None:
        wanted: dict[str, object] = {}
        # Connect upstream only once the request is known: the real host may be unreachable
        # when `upstream` sends calls elsewhere.
        if ctx.options.connection_strategy != "lazy":
            wanted["connection_strategy"] = "lazy"
        # Decrypt only LLM hosts; every other TLS connection is tunnelled untouched.
        if ctx.options.ignore_hosts:
            raise exceptions.OptionsError(
                "Tollgate decrypts only LLM hosts through allow_hosts; ignore_hosts cannot be combined with it"
            )
        hosts = list(ctx.options.allow_hosts)
        missing = [h for h in allow_hosts() if h not in hosts]
        if missing:
            wanted["allow_hosts"] = hosts + missing
        if wanted:
            ctx.options.update(**wanted)
