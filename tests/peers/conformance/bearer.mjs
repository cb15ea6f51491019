// bearer.mjs — preloaded (node --import) into the MCP conformance suite so
// every request it sends to ferry carries an API key: the suite has no
// option for one, and ferry's /mcp answers nothing without it. It wraps the
// global fetch, installs an undici dispatcher and wraps node:http's request
// (the suite uses all three), adding `Authorization: Bearer $FERRY_KEY` to requests for $FERRY_URL's
// origin that have none. Everything else passes untouched.
import http from 'node:http';
import { Agent, setGlobalDispatcher } from 'undici';

const key = process.env.FERRY_KEY;
const origin = new URL(process.env.FERRY_URL).origin;

function forFerry(url) {
  try {
    return new URL(String(url)).origin === origin;
  } catch {
    return false;
  }
}

const realFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const url = input instanceof Request ? input.url : input;
  if (!forFerry(url)) return realFetch(input, init);
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  if (!headers.has('authorization')) headers.set('authorization', `Bearer ${key}`);
  return realFetch(input, { ...init, headers });
};

setGlobalDispatcher(new Agent().compose((dispatch) => (opts, handler) => {
  if (forFerry(new URL(opts.path, opts.origin))) {
    const headers = { ...(Array.isArray(opts.headers) ? Object.fromEntries(pairs(opts.headers)) : opts.headers) };
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) headers.authorization = `Bearer ${key}`;
    opts = { ...opts, headers };
  }
  return dispatch(opts, handler);
}));

function pairs(flat) {
  const out = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

const realRequest = http.request;
http.request = function request(options, ...rest) {
  if (options && typeof options === 'object' && !(options instanceof URL)) {
    const url = `http://${options.hostname ?? options.host}:${options.port ?? 80}${options.path ?? '/'}`;
    const headers = { ...(options.headers ?? {}) };
    if (forFerry(url) && !Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) {
      headers.authorization = `Bearer ${key}`;
      options = { ...options, headers };
    }
  }
  return realRequest.call(this, options, ...rest);
};
