// Preloaded through NODE_OPTIONS by `./run.sh env`, so that Node programs go through HTTPS_PROXY
// (NO_PROXY honoured) whatever HTTP stack they use:
// - fetch: where Node ignores HTTPS_PROXY for it (before 22.21, 23.x, or NODE_USE_ENV_PROXY unset),
//   undici's EnvHttpProxyAgent becomes the dispatcher of the built-in fetch (the global dispatcher
//   is shared through a global symbol);
// - Node's http, https and http2 modules, on every version: sockets.cjs.
// CommonJS and --require, not --import: Node 18.17 and 20.0–20.5 lack --import.
"use strict";

const [major, minor] = process.versions.node.split(".").map(Number);
// The shell may outlive a switch to a Node that routes fetch itself (nvm): leave that one alone.
const routesItself = (major >= 24 || (major === 22 && minor >= 21)) && process.env.NODE_USE_ENV_PROXY === "1";
if (!routesItself) routeFetch();
require("./sockets.cjs").install();

function routeFetch() {
  let undici;
  try {
    undici = require("undici");
  } catch {
    // `./run.sh env` installs undici for the node it found; this one came after (nvm).
    process.stderr.write(
      `tollgate: undici is not installed in ${__dirname}, so the fetch of node ${process.version} ` +
        "ignores HTTPS_PROXY: evaluate ./run.sh env again with this node on the PATH\n",
    );
    return;
  }
  // Every node program of the shell would print undici's "experimental" warning on stderr.
  const emitWarning = process.emitWarning;
  process.emitWarning = (warning, options, ...rest) => {
    if (options?.code !== "UNDICI-EHPA") emitWarning.call(process, warning, options, ...rest);
  };
  try {
    undici.setGlobalDispatcher(new undici.EnvHttpProxyAgent());
  } finally {
    process.emitWarning = emitWarning;
  }
}
