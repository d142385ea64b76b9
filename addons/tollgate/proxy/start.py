"""`python -m tollgate.proxy.start mitmdump|mitmweb ARGS…`: mitmproxy's tool with Tollgate, started
only once the configuration its arguments name (`--set tollgate_config=PATH`) has been checked.

mitmproxy may listen before it loads Tollgate's script (it sets its servers up while scripts are
still loading): a configuration found wrong there is refused while the port already takes
connections. Checked here first, a wrong one stops the start before anything listens, in one line
naming the field; a good one runs the tool in this process, its modules already imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TOOLS = ("mitmdump", "mitmweb")
OPTION = "tollgate_config"
DEFAULT_FILE = "tollgate.yaml"  # read from the working directory when OPTION is not given


def config_named(args: Sequence[str]) -> str | None:
    """The `tollgate_config` the arguments set (the last `--set tollgate_config=PATH`), else None."""
    found = None
    for i, arg in enumerate(args):
        value = None
        if arg == "--set" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--set="):
            value = arg.removeprefix("--set=")
        if value is not None and value.startswith(f"{OPTION}="):
            found = value.removeprefix(f"{OPTION}=")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    tool, *args = sys.argv[1:] if argv is None else argv
    if tool not in TOOLS:
        print(f"usage: python -m tollgate.proxy.start {'|'.join(TOOLS)} ARGS…", file=sys.stderr)
        return 2
    path = config_named(args)
    if path is None and os.path.isfile(DEFAULT_FILE):
        path = DEFAULT_FILE  # what the script reads when no tollgate_config is given
    if path:
        from tollgate.configuration.config import ConfigError
        from tollgate.proxy.stages.process.settings import check_start

        try:
            check_start(path)
        except ConfigError as e:
            print(" ".join(f"Tollgate configuration: {e}".splitlines()), file=sys.stderr, flush=True)
            return 1
    from mitmproxy.tools import main as tools

    from tollgate.configuration.fleet import one_listen_hint

    one_listen_hint()  # before mitmproxy's servers start, which may be before Tollgate's script loads

    sys.argv = [os.path.join(os.path.dirname(sys.executable), tool), *args]
    getattr(tools, tool)(list(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
