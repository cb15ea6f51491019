// mcp_v2_client_check.mjs: the official v2 MCP client
// (@modelcontextprotocol/client), pinned to revision 2026-07-28, talks to
// an MCP server URL: it lists the tools and calls one. ferry's modern-era
// tests use it to show that the fault server's /modern endpoint speaks
// 2026-07-28 as the SDK understands it, before ferry is tested against it.
//   node mcp_v2_client_check.mjs URL TOOL 'JSON arguments'
// Prints {"protocol", "tools": [names], "result"} on stdout.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, tool, args] = process.argv.slice(2);
const client = new Client({ name: 'ferry-fixture-check', version: '1.0.0' },
  { versionNegotiation: { mode: { pin: '2026-07-28' } } });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : {});
  for (const t of page.tools) tools.push(t.name);
  cursor = page.nextCursor;
} while (cursor !== undefined);
const result = await client.callTool({ name: tool, arguments: JSON.parse(args || '{}') });
process.stdout.write(JSON.stringify({ protocol: client.getNegotiatedProtocolVersion ? client.getNegotiatedProtocolVersion() : null, tools, result }) + '\n');
await client.close();
