"""The container's HEALTHCHECK: exit status 0 when Tollgate's `/healthz` answers 200, else 1 and why.

It asks `TOLLGATE_HEALTHZ` (default `http://127.0.0.1:9464/healthz`, beside `/metrics` on the
`metrics.listen` of the image's example configuration) directly: a proxy named in the container's
environment (HTTP_PROXY, …) is never used for it. Standard library only: it runs on every check."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9464/healthz"
TIMEOUT_S = 2.0
SHOWN = 200  # characters of an answer's body that the check prints (e.g. why Tollgate is not ready)


def check(url: str) -> tuple[bool, str]:
    """Whether `url` answers 200, and what to say about it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as answer:
            return answer.status == 200, f"{url}: {answer.status} {body(answer.read(SHOWN))}"
    except urllib.error.HTTPError as e:
        return False, f"{url}: {e.code} {body(e.read(SHOWN))}"
    except (OSError, ValueError) as e:  # refused, timed out, not a URL
        return False, f"{url}: {getattr(e, 'reason', None) or e}"


def body(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


def main() -> int:
    healthy, said = check(os.environ.get("TOLLGATE_HEALTHZ") or DEFAULT_URL)
    print(said, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
