// Sends the connections Node's own modules open (every `http`/`https` Agent, not only the default
// one, and `http2.connect`) to the proxy of HTTPS_PROXY (HTTP_PROXY for plain http) through a
// CONNECT tunnel, honouring NO_PROXY as undici's EnvHttpProxyAgent does for fetch. Node's own
// NODE_USE_ENV_PROXY (22.21+, 24+) reaches only the default agents; the AWS SDK for JavaScript
// makes agents of its own and speaks HTTP/2.
// What it does not reach: sockets a library opens itself (net/tls.connect, or an http request
// given its own createConnection without an agent, as `ws` does).
"use strict";

const http = require("node:http");
const https = require("node:https");
const http2 = require("node:http2");
const net = require("node:net");
const tls = require("node:tls");
const { Duplex } = require("node:stream");

const DEFAULT_PORTS = { "http:": 80, "https:": 443 };
// A proxy's answer to CONNECT is a few lines; one that sends more is not one to trust.
const MAX_ANSWER_HEAD = 16 * 1024;

function firstSet(env, names) {
  for (const name of names) if (env[name]) return env[name];
  return undefined;
}

function bare(host) {
  return host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
}

// NO_PROXY as undici reads it: entries split on commas and spaces, each HOST or HOST:PORT; `*`
// alone means no proxy; an entry starting with `.` or `*` matches the hosts ending with it.
function bypassed(host, port, noProxy) {
  if (noProxy.trim() === "*") return true;
  for (const entry of noProxy.split(/[,\s]/)) {
    if (!entry) continue;
    const parsed = /^(.+):(\d+)$/.exec(entry);
    const entryHost = bare(parsed ? parsed[1] : entry);
    if (parsed && Number(parsed[2]) !== port) continue;
    if (/^[.*]/.test(entryHost) ? host.endsWith(entryHost.replace(/^\*/, "")) : host === entryHost) return true;
  }
  return false;
}

// The proxy (a URL) a connection to host:port over `protocol` goes through, or null for none.
function proxyFor(protocol, host, port, env = process.env) {
  const names =
    protocol === "https:" ? ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"] : ["http_proxy", "HTTP_PROXY"];
  const value = firstSet(env, names);
  if (!value) return null;
  if (bypassed(bare(host), Number(port), env.no_proxy ?? env.NO_PROXY ?? "")) return null;
  let proxy;
  try {
    proxy = new URL(value);
  } catch {
    proxy = null;
  }
  if (!proxy || !(proxy.protocol in DEFAULT_PORTS)) {
    // Going around a proxy the user set is worse than failing: the connection fails, saying why.
    throw new Error(`the proxy ${protocol === "https:" ? "HTTPS_PROXY" : "HTTP_PROXY"} names is not an http(s) URL`);
  }
  return proxy;
}

function authority(host, port) {
  return net.isIPv6(bare(host)) ? `[${bare(host)}]:${port}` : `${host}:${port}`;
}

function connectHead(proxy, target) {
  let head = `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n`;
  if (proxy.username || proxy.password) {
    const login = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
    head += `Proxy-Authorization: Basic ${Buffer.from(login).toString("base64")}\r\n`;
  }
  return `${head}\r\n`;
}

// A socket to the proxy with a CONNECT tunnel to host:port open through it, given to `done`.
function openTunnel(proxy, host, port, done) {
  const proxyHost = bare(proxy.hostname);
  const proxyPort = Number(proxy.port) || DEFAULT_PORTS[proxy.protocol];
  const socket =
    proxy.protocol === "https:"
      ? tls.connect({ host: proxyHost, port: proxyPort, servername: net.isIP(proxyHost) ? undefined : proxyHost })
      : net.connect({ host: proxyHost, port: proxyPort });
  const target = authority(host, port);
  let received = Buffer.alloc(0);
  const finish = (err) => {
    socket.off("data", onData).off("error", finish).off("end", onEnd);
    if (err) {
      socket.destroy();
      return done(err);
    }
    done(null, socket);
  };
  const onEnd = () => finish(new Error(`the proxy ${proxy.host} closed the connection before answering CONNECT ${target}`));
  const onData = (chunk) => {
    received = Buffer.concat([received, chunk]);
    const end = received.indexOf("\r\n\r\n");
    if (end === -1) {
      if (received.length > MAX_ANSWER_HEAD) finish(new Error(`the proxy ${proxy.host} sent no end to its answer`));
      return;
    }
    const statusLine = received.subarray(0, received.indexOf("\r\n")).toString("latin1");
    if (!/^HTTP\/1\.[01] 2\d\d(?: |$)/.test(statusLine)) {
      return finish(new Error(`the proxy ${proxy.host} refused CONNECT ${target}: ${statusLine}`));
    }
    socket.pause();
    const rest = received.subarray(end + 4);
    if (rest.length) socket.unshift(rest);
    finish(null);
  };
  socket.on("data", onData).on("error", finish).on("end", onEnd);
  socket.write(connectHead(proxy, target));
}

// Every Agent of `module` (the default one and those libraries make) opens its connections through
// the proxy. An agent that Node itself proxies (its `proxyEnv` option, set by NODE_USE_ENV_PROXY on
// the default agents of 22.21+/24+) is left to Node; so is a unix socket or a socket given in.
function routeAgents(module, protocol) {
  const createConnection = module.Agent.prototype.createConnection;
  module.Agent.prototype.createConnection = function (options, oncreate) {
    const own = () => createConnection.apply(this, arguments);
    if (typeof oncreate !== "function" || !options || typeof options !== "object") return own();
    if (this.options?.proxyEnv || options.socketPath || options.socket) return own();
    const host = options.host || "localhost";
    const port = Number(options.port) || DEFAULT_PORTS[protocol];
    let proxy;
    try {
      proxy = proxyFor(protocol, host, port);
    } catch (error) {
      oncreate(error);
      return undefined;
    }
    if (!proxy) return own();
    openTunnel(proxy, host, port, (err, socket) => {
      if (err) return oncreate(err);
      if (options.keepAlive) socket.setKeepAlive(true, options.keepAliveInitialDelay);
      if (protocol === "http:") return oncreate(null, socket);
      let secure;
      try {
        secure = createConnection.call(this, { ...options, socket }, oncreate);
      } catch (error) {
        socket.destroy();
        return oncreate(error);
      }
      if (secure) oncreate(null, secure);
    });
    return undefined;
  };
}

// A duplex stream over a tunnel being opened: what is written before it opens waits for it.
class Tunnel extends Duplex {
  constructor(proxy, host, port) {
    super();
    this.socket = null;
    this.waiting = [];
    openTunnel(proxy, host, port, (err, socket) => {
      if (err) return this.destroy(err);
      this.socket = socket;
      socket.on("data", (chunk) => this.push(chunk) || socket.pause());
      socket.on("end", () => this.push(null));
      socket.on("error", (error) => this.destroy(error));
      socket.on("close", () => this.destroy());
      for (const [chunk, callback] of this.waiting.splice(0)) socket.write(chunk, callback);
      if (this.ended) socket.end();
      socket.resume();
    });
  }
  _read() {
    this.socket?.resume();
  }
  _write(chunk, _encoding, callback) {
    if (this.socket) this.socket.write(chunk, callback);
    else this.waiting.push([chunk, callback]);
  }
  _final(callback) {
    if (this.socket) this.socket.end();
    else this.ended = true;
    callback();
  }
  _destroy(err, callback) {
    this.socket?.destroy();
    callback(err);
  }
}

// http2.connect opens its socket itself and must return the session at once: a tunnel stream in
// its place, with TLS over it as http2.connect would have made it (ALPN h2, the host's name).
function routeHttp2() {
  const connect = http2.connect;
  http2.connect = function (authority, options, listener) {
    if (typeof options === "function") {
      listener = options;
      options = undefined;
    }
    const own = () => connect.call(this, authority, options, listener);
    if (options?.createConnection) return own();
    let url;
    try {
      url = typeof authority === "string" ? new URL(authority) : authority;
    } catch {
      return own(); // http2.connect says what is wrong with it
    }
    if (!url || typeof url !== "object") return own();
    const protocol = url.protocol || options?.protocol || "https:";
    if (!(protocol in DEFAULT_PORTS)) return own();
    const host = url.hostname ? bare(url.hostname) : url.host || "localhost";
    const port = Number(url.port) || (url.protocol === "http:" ? 80 : 443);
    const proxy = proxyFor(protocol, host, port);
    if (!proxy) return own();
    const createConnection = () => {
      const tunnel = new Tunnel(proxy, host, port);
      if (protocol === "http:") return tunnel;
      const servername = options?.servername || (net.isIP(host) ? undefined : host);
      const alpn = options?.ALPNCallback ? {} : { ALPNProtocols: options?.allowHTTP1 ? ["h2", "http/1.1"] : ["h2"] };
      return tls.connect({ ...options, ...alpn, servername, host, port, socket: tunnel });
    };
    return connect.call(this, authority, { ...options, createConnection }, listener);
  };
}

function install() {
  routeAgents(http, "http:");
  routeAgents(https, "https:");
  routeHttp2();
}

module.exports = { install, proxyFor, bypassed };
