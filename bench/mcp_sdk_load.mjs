// bench/mcp_sdk_load.mjs: bench/mcp's load client. The official MCP SDK
// client (@modelcontextprotocol/sdk 1.x, from tests/peers) connects once,
// then calls one tool `concurrency` calls at a time for `seconds`; prints
// loadgen's JSON keys (requests, errors, throughput_rps, p50, p95, p99) and
// its own CPU per call (client_us).
//   node mcp_sdk_load.mjs PEERS_DIR TARGET CONCURRENCY SECONDS TOOL 'JSON args'
// TARGET: stdio:/path/to/server (a child process) or an http(s) URL
// (Streamable HTTP; MCP_KEY, when set, is sent as a Bearer key).
import { pathToFileURL } from 'node:url';

const [peers, target, conc, secs, tool, args] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(`${peers}/node_modules/@modelcontextprotocol/sdk/dist/esm/${p}`).href);
const { Client } = await sdk('client/index.js');
let transport;
if (target.startsWith('stdio:')) {
  const { StdioClientTransport } = await sdk('client/stdio.js');
  transport = new StdioClientTransport({ command: target.slice(6), stderr: 'ignore' });
} else {
  const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
  const headers = process.env.MCP_KEY ? { Authorization: `Bearer ${process.env.MCP_KEY}` } : {};
  transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
}
const client = new Client({ name: 'ferry-bench', version: '1.0.0' });
await client.connect(transport);
const argument = JSON.parse(args);
const lat = [];
let errors = 0;
let firstError;
const end = Date.now() + Number(secs) * 1000;
async function worker() {
  while (Date.now() < end) {
    const t0 = process.hrtime.bigint();
    try {
      const r = await client.callTool({ name: tool, arguments: argument });
      if (r.isError) {
        errors++;
        firstError ??= JSON.stringify(r.content);
      }
    } catch (err) {
      errors++;
      firstError ??= String(err?.message ?? err);
    }
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
const cpu0 = process.cpuUsage();
const start = process.hrtime.bigint();
await Promise.all(Array.from({ length: Number(conc) }, worker));
const took = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpu0);
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0);
const out = {
  requests: lat.length, errors, throughput_rps: +(lat.length / took).toFixed(1),
  p50: +q(0.5).toFixed(3), p95: +q(0.95).toFixed(3), p99: +q(0.99).toFixed(3),
  client_us: +((cpu.user + cpu.system) / Math.max(1, lat.length)).toFixed(1),
};
if (firstError) out.first_error = firstError.slice(0, 200);
process.stdout.write(`${JSON.stringify(out)}\n`);
await client.close();
