"""Bare mitmdump with nothing of Tollgate's but its hook dispatch patch (`patches.dispatch`), loaded
as a script as Tollgate is: the benches' reference for what of Tollgate's figures is its own work,
and what is mitmproxy's dispatch made cheaper.

    mitmdump -s bench/dispatch_patched.py …"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

from tollgate.proxy.patches import cheaper_hook_dispatch

cheaper_hook_dispatch()
