// Preloaded through NODE_OPTIONS by `./run.sh env` where Node's fetch ignores HTTPS_PROXY (before
// 22.21, 23.x): undici's EnvHttpProxyAgent becomes the dispatcher of the built-in fetch (the global
// dispatcher is shared through a global symbol), so HTTPS_PROXY and NO_PROXY are honoured.
// CommonJS and --require, not --import: Node 18.17 and 20.0–20.5 lack --import.
"use strict";

const [major, minor] = process.versions.node.split(".").map(Number);
// The shell may outlive a switch to a Node that routes fetch itself (nvm): leave that one alone.
const routesItself = (major >= 24 || (major === 22 && minor >= 21)) && process.env.NODE_USE_ENV_PROXY === "1";
if (!routesItself) {
  const { setGlobalDispatcher, EnvHttpProxyAgent } = require("undici");
  // Every node program of the shell would print undici's "experimental" warning on stderr.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, options, ...rest) => {
    if (options?.code !== "UNDICI-EHPA") emitWarning.call(process, warning, options, ...rest);
  };
  try {
    setGlobalDispatcher(new EnvHttpProxyAgent());
  } finally {
    process.emitWarning = emitWarning;
  }
}
