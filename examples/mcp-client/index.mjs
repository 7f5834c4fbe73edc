// The MCP TypeScript SDK's client, given Bound's fetch: every MCP request carries a DPoP-bound token
// and a fresh proof; the MCP server sits behind a verifying API gateway (the testkit's RS).
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { createBoundFetch, clientCredentials, clientSecretBasic, createSession, generateDpopKey } from '@bound/fetch'
import { check, log, run, startServers } from '@example/support'

run(async () => {
  const kit = await startServers()
  // an MCP server behind the verifying gateway (stateless Streamable HTTP)
  kit.rs.route('/mcp', async ({ req, res, body, auth }) => {
    const server = new McpServer({ name: 'weather', version: '1.0.0' })
    server.registerTool('forecast', { description: 'Tomorrow’s weather' }, async () => ({ content: [{ type: 'text', text: `sunny, for ${auth.claims.client_id}` }] }))
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
    res.on('close', () => void transport.close())
    await server.connect(transport)
    await transport.handleRequest(req, res, body.length ? JSON.parse(body.toString()) : undefined)
  })

  const client = kit.clients.secretBasic
  const session = createSession({ issuer: kit.issuer, clientId: client.clientId, clientAuth: clientSecretBasic(client.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
  const fetch = createBoundFetch({ session, origins: [kit.api] })

  const mcp = new Client({ name: 'agent', version: '1.0.0' })
  await mcp.connect(new StreamableHTTPClientTransport(new URL(`${kit.api}/mcp`), { fetch }))
  const { tools } = await mcp.listTools()
  log(`tools: ${tools.map((t) => t.name).join(', ')}`)
  const result = await mcp.callTool({ name: 'forecast', arguments: {} })
  log(`forecast → ${result.content[0].text}`)
  check(kit.rs.counters().byBinding.dpop > 0 && kit.rs.counters().byBinding.bearer === 0, 'every MCP request should be DPoP-bound')
  await mcp.close()
  await session.close()
  await kit.close()
  log('ok')
})
