// mcp_client.mjs — drives an MCP server with an official TypeScript SDK
// client and prints what happened as one JSON object, for the integration
// specs (tests/integration/mcp_server_spec.lua) to assert on.
//
//   node mcp_client.mjs URL STEPS_JSON
// env: MCP_KEY (Bearer API key, optional), MCP_SDK = v1 (@modelcontextprotocol/sdk,
// revision 2025-11-25) | v2 (@modelcontextprotocol/client), MCP_MODE (v2's
// versionNegotiation: legacy | auto | pin:<version>).
// STEPS_JSON: [{"op":"list"}, {"op":"list_all"}, {"op":"call","name":...,"arguments":{...}}, {"op":"ping"}]
// Prints {connected, protocolVersion, serverInfo, capabilities, instructions, steps:[...]}; a
// failing step records {error:{name, code, message}} and the next one runs.
const [url, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson || '[]');
const sdk = process.env.MCP_SDK || 'v1';
const mode = process.env.MCP_MODE || 'legacy';
const headers = process.env.MCP_KEY ? { Authorization: `Bearer ${process.env.MCP_KEY}` } : {};

let Client, Transport;
if (sdk === 'v1') {
  ({ Client } = await import('@modelcontextprotocol/sdk/client/index.js'));
  ({ StreamableHTTPClientTransport: Transport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js'));
} else {
  ({ Client, StreamableHTTPClientTransport: Transport } = await import('@modelcontextprotocol/client'));
}

const options = {};
if (sdk === 'v2') {
  options.versionNegotiation = { mode: mode.startsWith('pin:') ? { pin: mode.slice(4) } : mode };
}

function describe(err) {
  return { name: err?.constructor?.name, code: err?.code, message: String(err?.message ?? err) };
}

const out = { sdk, mode, steps: [] };
const transport = new Transport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: 'ferry-mcp-test', version: '1.0.0' }, options);
try {
  await client.connect(transport);
  out.connected = true;
  out.protocolVersion = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion;
  out.serverInfo = client.getServerVersion();
  out.capabilities = client.getServerCapabilities();
  out.instructions = client.getInstructions?.();
} catch (err) {
  out.connected = false;
  out.error = describe(err);
}

if (out.connected) {
  for (const step of steps) {
    try {
      if (step.op === 'list') {
        out.steps.push(await client.listTools(step.cursor ? { cursor: step.cursor } : undefined));
      } else if (step.op === 'list_all') {
        // Follows nextCursor: every page, as an agent would.
        const pages = [];
        let cursor;
        do {
          const page = await client.listTools(cursor ? { cursor } : undefined);
          pages.push(page);
          cursor = page.nextCursor;
        } while (cursor !== undefined && pages.length < 100);
        out.steps.push({ pages: pages.length, tools: pages.flatMap((p) => p.tools), cursors: pages.map((p) => p.nextCursor ?? null) });
      } else if (step.op === 'call') {
        out.steps.push(await client.callTool({ name: step.name, arguments: step.arguments ?? {} }));
      } else if (step.op === 'ping') {
        out.steps.push(await client.ping());
      } else {
        out.steps.push({ error: { message: `unknown step ${step.op}` } });
      }
    } catch (err) {
      out.steps.push({ error: describe(err) });
    }
  }
  try {
    await client.close();
  } catch (err) {
    out.closeError = describe(err);
  }
}
process.stdout.write(JSON.stringify(out) + '\n');
