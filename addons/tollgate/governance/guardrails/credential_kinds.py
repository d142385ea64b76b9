"""The credential kinds the built-in detectors know by a format of their own, kept as data: each
issuer's prefix, structure or name, and the alphabet and length of what follows
(`detectors.py` makes a detector of each row)."""

from __future__ import annotations

# Credentials known by their prefix, as their issuers document them: (kind, prefix, the rest).
# Each is a token (`token`): found where its prefix begins, not inside a longer word.
PREFIXED: tuple[tuple[str, bytes, bytes], ...] = (
    # Cloud providers and their platforms
    ("secrets.digitalocean_token", rb"do[opr]_v1_", rb"[a-f0-9]{64}"),
    ("secrets.cloudflare_origin_ca_key", rb"v1\.0-", rb"[a-f0-9]{24}-[a-f0-9]{146}"),
    ("secrets.alibaba_access_key_id", rb"LTAI", rb"[A-Za-z0-9]{20}"),
    ("secrets.heroku_api_key", rb"HRKU-AA", rb"[A-Za-z0-9_-]{58}"),
    ("secrets.flyio_token", rb"fo1_", rb"[A-Za-z0-9_-]{43}"),
    ("secrets.flyio_token", rb"fm[12][ar]?_", rb"[A-Za-z0-9+/]{100,2000}={0,3}"),
    ("secrets.scalingo_token", rb"tk-us-", rb"[A-Za-z0-9_-]{48}"),
    ("secrets.doppler_token", rb"dp\.(?:pt|st|sa|scim|audit|ct)\.", rb"[A-Za-z0-9]{40,44}"),
    ("secrets.pulumi_token", rb"pul-", rb"[a-f0-9]{40}"),
    ("secrets.vault_token", rb"hvs\.", rb"[A-Za-z0-9_-]{90,120}"),
    ("secrets.vault_token", rb"hvb\.", rb"[A-Za-z0-9_-]{138,300}"),
    ("secrets.openshift_token", rb"sha256~", rb"[A-Za-z0-9_-]{43}"),
    ("secrets.netlify_token", rb"nfp_", rb"[A-Za-z0-9]{36}"),
    ("secrets.render_api_key", rb"rnd_", rb"[A-Za-z0-9]{28}"),
    ("secrets.supabase_token", rb"sbp_", rb"[a-f0-9]{40}"),
    ("secrets.supabase_token", rb"sb_secret_", rb"[A-Za-z0-9_-]{31}"),
    ("secrets.planetscale_token", rb"pscale_(?:tkn|pw|oauth)_", rb"[A-Za-z0-9_.=-]{32,64}"),
    ("secrets.databricks_token", rb"dapi", rb"[a-f0-9]{32}(?:-[0-9])?"),
    ("secrets.aws_session_token", rb"(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE)", rb"[A-Za-z0-9/+]{100,4000}={0,2}"),
    ("secrets.aws_bedrock_api_key", rb"ABSK", rb"[A-Za-z0-9+/]{109,269}={0,2}"),
    # A short-term key: `bedrock.amazonaws.com/?Action=CallWithBearerToken&…` in base64.
    ("secrets.aws_bedrock_api_key", rb"bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t", rb"[A-Za-z0-9+/]{20,4000}={0,2}"),
    ("secrets.google_oauth_access_token", rb"ya29\.", rb"[A-Za-z0-9_-]{30,2000}"),
    ("secrets.google_oauth_refresh_token", rb"1//0", rb"[A-Za-z0-9_-]{40,512}"),
    ("secrets.yandex_api_key", rb"AQVN", rb"[A-Za-z0-9_-]{35,38}"),
    ("secrets.defined_networking_token", rb"dnkey-", rb"[A-Za-z0-9=_-]{26}-[A-Za-z0-9=_-]{52}"),
    ("secrets.age_secret_key", rb"AGE-SECRET-KEY-1", rb"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    ("secrets.onepassword_token", rb"ops_eyJ", rb"[A-Za-z0-9+/]{250,4000}={0,3}"),
    (
        "secrets.onepassword_secret_key",
        rb"A3-",
        rb"[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
    ),
    ("secrets.clickhouse_api_secret", rb"4b1d", rb"[A-Za-z0-9]{38}"),
    # CI, code hosting and package registries
    ("secrets.atlassian_api_token", rb"ATATT3", rb"[A-Za-z0-9_=-]{186}"),
    ("secrets.bitbucket_app_password", rb"ATBB", rb"[A-Za-z0-9]{32}"),
    ("secrets.rubygems_api_key", rb"rubygems_", rb"[a-f0-9]{48}"),
    ("secrets.nuget_api_key", rb"oy2", rb"[a-z0-9]{43}"),
    ("secrets.clojars_token", rb"CLOJARS_", rb"[a-z0-9]{60}"),
    ("secrets.crates_io_token", rb"cio", rb"[A-Za-z0-9]{32}"),
    ("secrets.artifactory_api_key", rb"AKCp", rb"[A-Za-z0-9]{69}"),
    ("secrets.artifactory_reference_token", rb"cmVmdGtu", rb"[A-Za-z0-9]{56}"),
    ("secrets.octopus_deploy_key", rb"API-", rb"[A-Z0-9]{26}"),
    ("secrets.buildkite_token", rb"bkua_", rb"[a-z0-9]{40}"),
    ("secrets.circleci_token", rb"CCIPAT_", rb"[A-Za-z0-9]{22}_[a-f0-9]{40}"),
    ("secrets.sourcegraph_token", rb"sgp_", rb"(?:[a-f0-9]{16}|local)_[a-f0-9]{40}"),
    ("secrets.sonarqube_token", rb"sq[pua]_", rb"[a-f0-9]{40}"),
    ("secrets.harness_token", rb"[ps]at\.", rb"[A-Za-z0-9_-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}"),
    ("secrets.infracost_api_key", rb"ico-", rb"[A-Za-z0-9]{32}"),
    ("secrets.terraform_cloud_token", rb"[a-z0-9]{14}\.atlasv1\.", rb"[a-z0-9_=-]{60,70}"),
    ("secrets.grafana_token", rb"glc_", rb"[A-Za-z0-9+/]{32,400}={0,2}"),
    ("secrets.grafana_token", rb"glsa_", rb"[A-Za-z0-9]{32}_[a-f0-9]{8}"),
    ("secrets.grafana_token", rb"eyJrIjoi", rb"[A-Za-z0-9]{70,400}={0,2}"),
    ("secrets.prefect_api_key", rb"pnu_", rb"[A-Za-z0-9]{36}"),
    ("secrets.postman_api_key", rb"PMAK-", rb"[a-f0-9]{24}-[a-f0-9]{34}"),
    ("secrets.readme_api_key", rb"rdme_", rb"[a-z0-9]{70}"),
    ("secrets.settlemint_token", rb"sm_(?:pat|aat|sat)_", rb"[A-Za-z0-9]{16}"),
    ("secrets.gitlab_session_cookie", rb"_gitlab_session=", rb"[0-9a-z]{32}"),
    # SaaS APIs
    ("secrets.twilio_api_key", rb"SK", rb"[0-9a-f]{32}"),
    ("secrets.mailgun_api_key", rb"key-", rb"[a-f0-9]{32}"),
    ("secrets.mailgun_api_key", rb"pubkey-", rb"[a-f0-9]{32}"),
    ("secrets.mailersend_api_key", rb"mlsn\.", rb"[a-f0-9]{64}"),
    ("secrets.brevo_api_key", rb"xkeysib-", rb"[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    ("secrets.resend_api_key", rb"re_", rb"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}"),
    ("secrets.sentry_token", rb"sntrys_eyJ", rb"[A-Za-z0-9+/=_-]{80,1000}"),
    ("secrets.sentry_token", rb"sntryu_", rb"[a-f0-9]{64}"),
    ("secrets.linear_api_key", rb"lin_api_", rb"[A-Za-z0-9]{40}"),
    ("secrets.notion_token", rb"secret_", rb"[A-Za-z0-9]{43}"),
    ("secrets.notion_token", rb"ntn_", rb"[0-9]{11}[A-Za-z0-9]{35}"),
    ("secrets.shopify_token", rb"shp(?:at|ca|pa|ss)_", rb"[a-fA-F0-9]{32}"),
    ("secrets.figma_token", rb"figd_", rb"[A-Za-z0-9_-]{40}"),
    ("secrets.airtable_token", rb"pat", rb"[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    ("secrets.contentful_token", rb"CFPAT-", rb"[A-Za-z0-9_-]{43}"),
    ("secrets.frameio_token", rb"fio-u-", rb"[A-Za-z0-9_=-]{64}"),
    ("secrets.typeform_token", rb"tfp_", rb"[A-Za-z0-9_.=-]{59}"),
    ("secrets.duffel_token", rb"duffel_(?:test|live)_", rb"[A-Za-z0-9_=-]{43}"),
    ("secrets.easypost_api_key", rb"EZ[AT]K", rb"[A-Za-z0-9]{54}"),
    ("secrets.flutterwave_secret_key", rb"FLWSECK(?:_TEST)?-", rb"[a-h0-9]{32}-X"),
    ("secrets.flutterwave_encryption_key", rb"FLWSECK(?:_TEST)?", rb"[a-f0-9]{12}"),
    ("secrets.square_token", rb"sq0(?:atp|csp)-", rb"[A-Za-z0-9_-]{22,43}"),
    ("secrets.square_token", rb"EAAA", rb"[A-Za-z0-9_-]{60}"),
    ("secrets.braintree_token", rb"access_token\$production\$", rb"[a-z0-9]{16}\$[a-f0-9]{32}"),
    (
        "secrets.plaid_token",
        rb"access-(?:sandbox|development|production)-",
        rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}",
    ),
    ("secrets.shippo_token", rb"shippo_(?:live|test)_", rb"[a-f0-9]{40}"),
    ("secrets.newrelic_key", rb"NRAK-", rb"[A-Z0-9]{27}"),
    ("secrets.newrelic_key", rb"NRII-", rb"[A-Za-z0-9_-]{32}"),
    ("secrets.newrelic_key", rb"NRJS-", rb"[a-f0-9]{19}"),
    ("secrets.dynatrace_token", rb"dt0c01\.", rb"[A-Z0-9]{24}\.[A-Z0-9]{64}"),
    ("secrets.hubspot_token", rb"pat-(?:na|eu)1-", rb"[a-f0-9]{8}-(?:[a-f0-9]{4}-){3}[a-f0-9]{12}"),
    ("secrets.posthog_personal_api_key", rb"phx_", rb"[A-Za-z0-9]{43}"),
    ("secrets.mapbox_secret_token", rb"sk\.eyJ", rb"[A-Za-z0-9_-]{50,400}\.[A-Za-z0-9_-]{20,100}"),
    ("secrets.facebook_access_token", rb"EAA[CM]", rb"[A-Za-z0-9]{100,400}"),
    ("secrets.adobe_client_secret", rb"p8e-", rb"[A-Za-z0-9]{32}"),
    ("secrets.intra42_client_secret", rb"s-s4t2(?:ud|af)-", rb"[a-f0-9]{64}"),
    ("secrets.dropbox_token", rb"sl\.", rb"[A-Za-z0-9_-]{130,152}"),
    (
        "secrets.slack_webhook",
        rb"https://hooks\.slack\.com/workflows/",
        rb"[A-Z0-9]{9,12}/[A-Za-z0-9]{9,12}/[0-9]{6,20}/[A-Za-z0-9]{20,40}",
    ),
    ("secrets.discord_webhook", rb"https://discord(?:app)?\.com/api/webhooks/", rb"[0-9]{17,20}/[A-Za-z0-9_-]{60,68}"),
    (
        "secrets.teams_webhook",
        rb"https://[a-z0-9-]{1,63}\.webhook\.office\.com/webhookb2/",
        rb"[a-f0-9-]{36}@[a-f0-9-]{36}/IncomingWebhook/[a-f0-9]{32}/[a-f0-9-]{36}(?:/[A-Za-z0-9_-]{20,60})?",
    ),
    # LLM and AI vendors
    ("secrets.replicate_api_token", rb"r8_", rb"[A-Za-z0-9]{37}"),
    ("secrets.perplexity_api_key", rb"pplx-", rb"[A-Za-z0-9]{48}"),
    ("secrets.openrouter_api_key", rb"sk-or-v1-", rb"[a-f0-9]{64}"),
    ("secrets.deepseek_api_key", rb"sk-", rb"[a-f0-9]{32}"),
    ("secrets.huggingface_token", rb"api_org_", rb"[A-Za-z]{34}"),
    ("secrets.fireworks_api_key", rb"fw_", rb"[A-Za-z0-9]{24,33}"),
    ("secrets.cerebras_api_key", rb"csk-", rb"[a-z0-9]{48}"),
    ("secrets.langsmith_api_key", rb"lsv2_(?:pt|sk)_", rb"[a-f0-9]{32}_[a-f0-9]{10}"),
    ("secrets.langfuse_secret_key", rb"sk-lf-", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
    ("secrets.pinecone_api_key", rb"pcsk_", rb"[A-Za-z0-9]{6}_[A-Za-z0-9]{63}"),
    ("secrets.together_api_key", rb"tgp_v1_", rb"[A-Za-z0-9_-]{43}"),
    # Tavily's keys: 32 letters and digits, or (newer) an id, `-` and 42.
    ("secrets.tavily_api_key", rb"tvly-(?:dev-|prod-)?", rb"(?:[A-Za-z0-9]{32}|[A-Za-z0-9]{4,8}-[A-Za-z0-9]{42})"),
    ("secrets.elevenlabs_api_key", rb"sk_", rb"[a-f0-9]{48}"),
    ("secrets.firecrawl_api_key", rb"fc-", rb"[a-f0-9]{32}"),
    ("secrets.e2b_api_key", rb"e2b_", rb"[a-f0-9]{40}"),
    # More vendors, A to C
    # Adafruit IO's keys.
    ("secrets.adafruit_io_key", rb"aio_", rb"[A-Za-z0-9]{28}"),
    # Asana's personal access tokens: `1/` and the user's number, or (newer) `2/`, the user's and
    # the token's numbers; then `:` and 32 hex.
    ("secrets.asana_token", rb"[12]/", rb"[0-9]{16}(?:/[0-9]{16})?:[a-f0-9]{32}"),
    # More vendors, D to G
    ("secrets.flutterwave_public_key", rb"FLWPUBK(?:_TEST)?-", rb"[a-f0-9]{32}-X"),
    # More vendors, H to P
    # Lob's secret and publishable keys, of its live and test environments.
    ("secrets.lob_api_key", rb"(?:live|test)_", rb"[a-f0-9]{35}"),
    ("secrets.lob_api_key", rb"(?:live|test)_pub_", rb"[a-f0-9]{31}"),
    # More vendors, R to Z
    # Slack's webhooks written with `http://`.
    (
        "secrets.slack_webhook",
        rb"http://hooks\.slack\.com/(?:services|workflows|triggers)/",
        rb"T[A-Z0-9]{8,12}/[A-Z0-9]{8,14}/(?:[0-9]{6,20}/)?[A-Za-z0-9]{20,40}",
    ),
)

# Credentials known by a structure in them, not by how they begin: (kind, pattern, anchor). Each
# is a whole word (of letters, digits, `_` and `-`); its anchor is a part of it few other words have.
SHAPED: tuple[tuple[str, bytes, bytes], ...] = (
    # Microsoft Entra ID's client secrets: three characters, a digit and `Q~`.
    (
        "secrets.azure_ad_client_secret",
        rb"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
        rb"[0-9]Q~[A-Za-z0-9_~.-]{4}",
    ),
    ("secrets.mailgun_signing_key", rb"[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}", rb"-[a-f0-9]{8}-[a-f0-9]{2}"),
    ("secrets.mailchimp_api_key", rb"[a-f0-9]{32}-us[0-9]{1,2}", rb"-us[0-9]"),
    ("secrets.maxmind_license_key", rb"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk", rb"_mmk"),
    ("secrets.telegram_bot_token", rb"[0-9]{5,16}:A[A-Za-z0-9_-]{34}", rb"[0-9]:A[A-Za-z0-9_-]{6}"),
    (
        "secrets.authress_access_key",
        rb"(?:sc|ext|scauth|authress)_[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_-][A-Za-z0-9-]{10,32}"
        rb"\.[A-Za-z0-9+/_=-]{30,120}",
        rb"\.acc[_-]",
    ),
    # A Facebook app's access token: the app's id (15 or 16 digits), `|` (or `%7C`) and its secret
    # or a signature of 27 to 40 characters.
    (
        "secrets.facebook_access_token",
        rb"[0-9]{15,16}(?:\||%7[Cc])[A-Za-z0-9_-]{27,40}",
        rb"[0-9]{15}(?:\||%7[Cc])",
    ),
    # RapidAPI's keys: 10 hex, `msh`, 15 hex, `p` and 6 hex, `jsn`, 12 hex.
    ("secrets.rapidapi_key", rb"[a-f0-9]{10}msh[a-f0-9]{15}p[a-f0-9]{6}jsn[a-f0-9]{12}", rb"msh[a-f0-9]{15}p"),
)

# Credentials of no prefix of their own, known by the name they are given (`NAME=value`,
# `"NAME": "value"`): (kind, name, value).
NAMED: tuple[tuple[str, bytes, bytes], ...] = (
    ("secrets.mistral_api_key", rb"MISTRAL_API_KEY", rb"[A-Za-z0-9]{32}"),
    ("secrets.cohere_api_key", rb"(?:COHERE|CO)_API_KEY", rb"[A-Za-z0-9]{40}"),
    ("secrets.together_api_key", rb"TOGETHER_API_KEY", rb"[a-f0-9]{64}"),
    ("secrets.datadog_api_key", rb"(?:DD|DATADOG)_API_KEY", rb"[a-f0-9]{32}"),
    ("secrets.datadog_app_key", rb"(?:DD|DATADOG)_APP(?:LICATION)?_KEY", rb"[a-f0-9]{40}"),
    ("secrets.twilio_auth_token", rb"TWILIO_AUTH_TOKEN", rb"[a-f0-9]{32}"),
    ("secrets.cloudflare_api_token", rb"(?:CLOUDFLARE|CF)_API_TOKEN", rb"[A-Za-z0-9_-]{40}"),
    ("secrets.cloudflare_api_key", rb"(?:CLOUDFLARE|CF)_API_KEY", rb"[a-f0-9]{37}"),
    ("secrets.algolia_api_key", rb"ALGOLIA_(?:ADMIN_)?API_KEY", rb"[a-f0-9]{32}"),
    ("secrets.linode_token", rb"LINODE_(?:API_)?TOKEN", rb"[a-f0-9]{64}"),
    ("secrets.vercel_token", rb"VERCEL_TOKEN", rb"[A-Za-z0-9]{24}"),
    ("secrets.azure_openai_api_key", rb"AZURE_OPENAI_API_KEY", rb"[A-Za-z0-9]{32,84}"),
    ("secrets.gcp_service_account", rb"private_key_id", rb"[a-f0-9]{40}"),
    ("secrets.okta_api_token", rb"OKTA_(?:API_)?TOKEN", rb"00[A-Za-z0-9_=-]{40}"),
    ("secrets.twitter_bearer_token", rb"(?:TWITTER|X)_BEARER_TOKEN", rb"A{22}[A-Za-z0-9%]{80,100}"),
    ("secrets.heroku_api_key", rb"HEROKU_API_KEY", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
    ("secrets.sentry_token", rb"SENTRY_AUTH_TOKEN", rb"[a-f0-9]{64}"),
    ("secrets.snyk_token", rb"SNYK_(?:API_)?TOKEN", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
)

# Credentials of no prefix of their own, known by their vendor's name in the name they are given
# (`etsy_api_token = "…"`, `"EtsyToken": "…"`, `<EtsyToken>…</EtsyToken>`): (kind, vendor, value).
VENDOR_NAMED: tuple[tuple[str, bytes, bytes], ...] = (
    # Vendors A to C
    ("secrets.adobe_client_id", rb"adobe", rb"[a-f0-9]{32}"),
    # Airtable's older API keys (its tokens are `pat…`, above).
    ("secrets.airtable_api_key", rb"airtable", rb"key[A-Za-z0-9]{14}"),
    ("secrets.algolia_api_key", rb"algolia", rb"[a-f0-9]{32}"),
    ("secrets.alibaba_access_key_secret", rb"alibaba|aliyun", rb"[A-Za-z0-9]{30}"),
    ("secrets.asana_client_secret", rb"asana", rb"[a-z0-9]{32}"),
    # Atlassian's older API tokens (Jira's, Confluence's): 24 characters, the last four hex.
    ("secrets.atlassian_api_token", rb"atlassian|confluence|jira", rb"[A-Za-z0-9]{20}[a-fA-F0-9]{4}"),
    ("secrets.beamer_api_key", rb"beamer", rb"b_[A-Za-z0-9=_-]{44}"),
    ("secrets.bitbucket_client_secret", rb"bitbucket", rb"[A-Za-z0-9]{32}"),
    # Bittrex's API keys and their secrets, of one shape.
    ("secrets.bittrex_api_key", rb"bittrex", rb"[a-z0-9]{32}"),
    # A run of one character (`aaaaaaaaaa1111111111…`) is a placeholder, not a key.
    ("secrets.meraki_api_key", rb"meraki", rb"[a-f0-9]{40}"),
    # Codecov's upload tokens are UUIDs.
    ("secrets.codecov_token", rb"codecov", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
    ("secrets.coinbase_access_token", rb"coinbase", rb"[A-Za-z0-9_-]{64}"),
    # A Confluent Cloud API key's secret (its key ID, capitals and digits, is not a secret).
    ("secrets.confluent_api_secret", rb"confluent", rb"[A-Za-z0-9+/]{64}"),
    ("secrets.contentful_delivery_token", rb"contentful", rb"[A-Za-z0-9_-]{43}"),
    # Vendors D to G
    ("secrets.datadog_api_key", rb"datadog", rb"[a-f0-9]{32}"),
    ("secrets.datadog_app_key", rb"datadog", rb"[a-f0-9]{40}"),
    # A client secret not a run of one character (`0000…`, a placeholder).
    ("secrets.discord_client_secret", rb"discord", rb"[A-Za-z0-9_-]{32}"),
    ("secrets.discord_public_key", rb"discord", rb"[a-f0-9]{64}"),
    ("secrets.drone_token", rb"drone(?:[_-]?ci|[_-]?token)", rb"[A-Za-z0-9]{32}"),
    ("secrets.dropbox_app_secret", rb"dropbox", rb"(?=[a-z0-9]{0,14}[0-9])[a-z0-9]{15}"),
    ("secrets.dropbox_token", rb"dropbox", rb"[A-Za-z0-9_-]{11}A{10}[A-Za-z0-9_-]{43}"),
    ("secrets.etsy_access_token", rb"etsy", rb"[a-z0-9]{24}"),
    ("secrets.facebook_app_secret", rb"facebook", rb"[a-f0-9]{32}"),
    ("secrets.fastly_api_token", rb"fastly", rb"[A-Za-z0-9_-]{32}"),
    ("secrets.finicity_app_key", rb"finicity", rb"[a-f0-9]{32}"),
    ("secrets.finicity_partner_secret", rb"finicity", rb"[A-Za-z0-9]{20}"),
    ("secrets.finnhub_api_key", rb"finnhub", rb"[a-z0-9]{20}"),
    ("secrets.flickr_api_key", rb"flickr", rb"[a-f0-9]{32}"),
    ("secrets.freshbooks_token", rb"fresh[_-]?books", rb"[a-z0-9]{64}"),
    ("secrets.gitter_token", rb"gitter", rb"[a-z0-9_-]{40}"),
    ("secrets.gocardless_token", rb"go[_-]?cardless", rb"(?:live|sandbox)_[A-Za-z0-9_-]{40}"),
    # Vendors H to P
    ("secrets.heroku_api_key", rb"heroku", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
    # HubSpot's older API keys (`hapikey`): a UUID, written in either case.
    ("secrets.hubspot_token", rb"hubspot", rb"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    ("secrets.intercom_access_token", rb"intercom", rb"[A-Za-z0-9+/=_-]{60}"),
    ("secrets.jfrog_token", rb"jfrog|artifactory|bintray|xray", rb"[a-z0-9]{64}"),
    # Kraken's private key: 64 bytes in base64.
    ("secrets.kraken_private_key", rb"kraken", rb"[A-Za-z0-9+/]{86}=="),
    ("secrets.kucoin_api_key", rb"kucoin", rb"[a-f0-9]{24}"),
    ("secrets.kucoin_api_secret", rb"kucoin", rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"),
    # LaunchDarkly's access tokens, server-side SDK keys and mobile keys: `api-`, `sdk-`, `mob-` and a UUID.
    (
        "secrets.launchdarkly_token",
        rb"launch[_-]?darkly",
        rb"(?:api|sdk|mob)-[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}",
    ),
    # LinkedIn's client ids: 14 lower-case letters and digits; its client secrets: 16 letters and digits.
    ("secrets.linkedin_client_id", rb"linked[_-]?in", rb"[a-z0-9]{14}"),
    ("secrets.linkedin_client_secret", rb"linked[_-]?in", rb"[A-Za-z0-9]{16}"),
    ("secrets.looker_client_id", rb"looker", rb"[A-Za-z0-9]{20}"),
    ("secrets.looker_client_secret", rb"looker", rb"[A-Za-z0-9]{24}"),
    ("secrets.mattermost_token", rb"mattermost", rb"[a-z0-9]{26}"),
    ("secrets.messagebird_api_key", rb"message[_-]?bird", rb"[a-z0-9]{25}"),
    ("secrets.messagebird_client_id", rb"message[_-]?bird", rb"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    ("secrets.netlify_token", rb"netlify", rb"[A-Za-z0-9=_-]{40,46}"),
    ("secrets.newrelic_key", rb"new[_-]?relic", rb"[a-z0-9]{64}"),
    ("secrets.nytimes_api_key", rb"nytimes|new[_-]?york[_-]?times", rb"[A-Za-z0-9]{32}"),
    # Okta's API tokens: `00` and 40 characters (not a run of zeros: a placeholder).
    ("secrets.okta_api_token", rb"okta", rb"00[A-Za-z0-9_=-]{40}"),
    # Plaid's client ids (24 hex digits) and secrets (30).
    ("secrets.plaid_client_id", rb"plaid", rb"[a-f0-9]{24}"),
    ("secrets.plaid_secret", rb"plaid", rb"[a-f0-9]{30}"),
    # Vendors R to Z
    # UUIDs (Sendbird's, Snyk's, Squarespace's) are written in either case of their hex digits.
    ("secrets.sendbird_app_id", rb"send[_-]?bird", rb"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"),
    ("secrets.sendbird_api_token", rb"send[_-]?bird", rb"[a-f0-9]{40}"),
    ("secrets.sentry_token", rb"sentry", rb"[a-f0-9]{64}"),
    # Sidekiq Pro's and Enterprise's gem server credentials, in Bundler's variable of its host.
    ("secrets.sidekiq_credentials", rb"contribsys", rb"[a-f0-9]{8}:[a-f0-9]{8}"),
    ("secrets.snyk_token", rb"snyk", rb"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"),
    ("secrets.sonarqube_token", rb"sonar", rb"[a-f0-9]{40}"),
    ("secrets.squarespace_api_key", rb"squarespace", rb"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"),
    # `Sumo` as written and a word's part (`sumoToken`, `SUMO_`), not `sumOf…` or `sumofsquares`;
    # an access key has a digit (not `xxxx…`).
    (
        "secrets.sumologic_access_id",
        rb"(?-i:[Ss]umo(?:[Ll]ogic)?[A-Z_.-]|SUMO(?:LOGIC)?[A-Z_.-])",
        rb"su[A-Za-z0-9]{12}",
    ),
    (
        "secrets.sumologic_access_key",
        rb"(?-i:[Ss]umo(?:[Ll]ogic)?[A-Z_.-]|SUMO(?:LOGIC)?[A-Z_.-])",
        rb"(?=[A-Za-z]{0,63}[0-9])[A-Za-z0-9]{64}",
    ),
    ("secrets.travis_ci_token", rb"travis", rb"[A-Za-z0-9]{22}"),
    ("secrets.twitch_token", rb"twitch", rb"[a-z0-9]{30}"),
    ("secrets.twitter_api_key", rb"twitter", rb"[A-Za-z0-9]{25}"),
    ("secrets.twitter_api_secret", rb"twitter", rb"[A-Za-z0-9]{50}"),
    ("secrets.twitter_access_token", rb"twitter", rb"[0-9]{1,25}-[A-Za-z0-9]{20,40}"),
    ("secrets.twitter_access_secret", rb"twitter", rb"[A-Za-z0-9]{45}"),
    ("secrets.twitter_bearer_token", rb"twitter", rb"A{22}[A-Za-z0-9%]{80,100}"),
    # Vault's service tokens before `hvs.`: `s.` and 24 letters and digits.
    ("secrets.vault_token", rb"vault", rb"s\.[A-Za-z0-9]{24}"),
    # An IAM token: `t1.`, its payload, `.` and an 86-character signature.
    ("secrets.yandex_iam_token", rb"yandex", rb"t1\.[A-Za-z0-9_-]{1,1000}={0,2}\.[A-Za-z0-9_-]{86}={0,2}"),
    # A static access key's secret (of its AWS-compatible API): `YC` and 38 characters.
    ("secrets.yandex_static_key_secret", rb"yandex", rb"YC[A-Za-z0-9_-]{38}"),
    ("secrets.zendesk_api_token", rb"zendesk", rb"[A-Za-z0-9]{40}"),
)
