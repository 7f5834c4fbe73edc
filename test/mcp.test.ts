import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { z } from 'zod'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, type Session } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
let session: Session
const MFA = 'urn:bound:mfa'

beforeAll(async () => {
  kit = await startTestkit()
  // An MCP server behind the verifying RS: every request reaching it carried a verified DPoP-bound token.
  kit.rs.route('/mcp', async ({ req, res, body, auth }) => {
    const message = body.length > 0 ? JSON.parse(body.toString('utf8')) : undefined
    const calls = (Array.isArray(message) ? message : [message]).filter(Boolean) as { method?: string; params?: { name?: string } }[]
    // the server's own policy: deleting an order needs a stepped-up token (RFC 9470)
    if (calls.some((m) => m.method === 'tools/call' && m.params?.name === 'delete_order') && auth.claims.acr !== MFA) {
      res.writeHead(401, { 'www-authenticate': `DPoP error="insufficient_user_authentication", error_description="deleting needs MFA", acr_values="${MFA}"`, 'content-type': 'application/json' })
      res.end('{"error":"insufficient_user_authentication"}')
      return
    }
    const server = new McpServer({ name: 'orders', version: '1.0.0' })
    server.registerTool('list_orders', { description: 'List orders', inputSchema: {} }, async () => ({ content: [{ type: 'text', text: `orders for ${String(auth.claims.client_id)}` }] }))
    server.registerTool('delete_order', { description: 'Delete an order (sensitive)', inputSchema: { id: z.string() } }, async ({ id }) => ({ content: [{ type: 'text', text: `deleted ${id} (acr ${String(auth.claims.acr)})` }] }))
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: false })
    res.on('close', () => {
      void transport.close()
      void server.close()
    })
    await server.connect(transport)
    await transport.handleRequest(req as never, res, message)
  })
  const c = kit.clients.secretBasic
  session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
})
afterAll(async () => {
  await session?.close()
  await kit?.close()
})

describe('the MCP TypeScript SDK client with Bound’s fetch (issue 6)', () => {
  it('lists and calls tools with a DPoP-bound token, survives a nonce rotation and a revocation, and steps up for a sensitive tool', async () => {
    let stepUps = 0
    const fetch = createBoundFetch({
      session,
      origins: [kit.api],
      onStepUp: (challenge) => {
        stepUps++
        return { acr_values: challenge.acrValues!.join(' ') } // a human approved it
      },
    })
    const client = new Client({ name: 'agent', version: '1.0.0' })
    await client.connect(new StreamableHTTPClientTransport(new URL(`${kit.api}/mcp`), { fetch }))
    try {
      const tools = await client.listTools()
      expect(tools.tools.map((t) => t.name).sort()).toEqual(['delete_order', 'list_orders'])
      const listed = await client.callTool({ name: 'list_orders', arguments: {} })
      expect(listed.content).toEqual([{ type: 'text', text: `orders for ${kit.clients.secretBasic.clientId}` }])

      kit.rs.rotateNonce()
      expect((await client.callTool({ name: 'list_orders', arguments: {} })).isError).toBeFalsy()

      kit.rs.revokeToken((await session.token()).value)
      expect((await client.callTool({ name: 'list_orders', arguments: {} })).isError).toBeFalsy()

      const deleted = await client.callTool({ name: 'delete_order', arguments: { id: '42' } })
      expect(deleted.content).toEqual([{ type: 'text', text: `deleted 42 (acr ${MFA})` }])
      expect(stepUps).toBe(1)
      expect(kit.rs.counters()).toMatchObject({ verifierDisagreements: 0, rejectedProofs: 0 })
      expect(kit.rs.counters().byBinding.bearer).toBe(0)
    } finally {
      await client.close()
    }
  })
})
