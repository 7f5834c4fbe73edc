/**
 * The MCP conformance suite's client under test: `@modelcontextprotocol/sdk`'s `Client` and
 * `StreamableHTTPClientTransport`, whose only custom part is Bound's fetch.
 *
 *   node --import tsx test/conformance/mcp-client.ts <server-url>
 *
 * The runner (`@modelcontextprotocol/conformance`, see scripts/conformance.mjs) passes the MCP
 * server URL as the last argument, the scenario in `MCP_CONFORMANCE_SCENARIO` and the workload's
 * credentials in `MCP_CONFORMANCE_CONTEXT` (JSON). The session is created WITHOUT an issuer: Bound
 * learns the authorization server and the `resource` from the MCP server's RFC 9728 metadata on
 * the first 401 (MCP-01), then earns a token with the credentials the context gives. A session with
 * credentials takes that AS only because `trustedIssuers` says so (the AS on the server's host).
 *
 * Exit code 0 when the client connected, listed tools and called one; 1 on any error (its Bound
 * error code, or HTTP status, and message go to stderr).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession, identityAssertionGrant, jwtBearer, noClientAuth, privateKeyJwt, type ClientAuth, type Grant, type Session } from '@bound/oauth'
import { generateDpopKey, type DpopAlg } from '@bound/dpop'

/** What `MCP_CONFORMANCE_CONTEXT` may hold (per scenario; see the runner's scenario sources). */
interface ConformanceContext {
  name?: string
  /** auth/client-credentials-basic, -jwt, auth/wif-jwt-bearer */
  client_id?: string
  /** auth/client-credentials-basic */
  client_secret?: string
  /** auth/client-credentials-jwt: the client's PKCS#8 signing key for private_key_jwt */
  private_key_pem?: string
  signing_algorithm?: string
  /** auth/wif-jwt-bearer: the workload identity JWT (aud = the AS issuer) */
  valid_jwt?: string
  /** auth/wif-jwt-bearer also passes these two; a well-behaved workload never sends them */
  wrong_audience_jwt?: string
  expired_jwt?: string
  /** auth/enterprise-managed-authorization: the user's ID token from the enterprise IdP (SSO) */
  idp_id_token?: string
  /** … the IdP's issuer and token endpoint, and the agent's client id there (no secret: the IdP takes `none`) */
  idp_issuer?: string
  idp_token_endpoint?: string
  idp_client_id?: string
}

/** How the workload authenticates and earns its token in one scenario. */
interface Credentials {
  clientId: string
  clientAuth: ClientAuth
  grant: Grant
  dpop: boolean
}

/** The client id of a workload whose scenario gives none (the AS accepts `none` there). */
const PUBLIC_CLIENT_ID = 'bound-conformance-workload'

/** Scenarios whose resource server demands DPoP-bound tokens (`WWW-Authenticate: DPoP …`). */
const DPOP_SCENARIOS = new Set(['auth/dpop', 'auth/dpop-nonce'])

function credentialsFor(scenario: string, ctx: ConformanceContext): Credentials {
  const dpop = DPOP_SCENARIOS.has(scenario)
  // No resource or scope here: the grant's resource comes from the protected resource metadata.
  if (ctx.idp_id_token !== undefined) {
    // Enterprise-managed authorization (ID-JAG): the ID token is exchanged at the IdP for an ID-JAG
    // (audience = the AS learned from the metadata), redeemed at the AS with client_secret_basic.
    const grant = identityAssertionGrant({
      idp: { issuer: need(ctx.idp_issuer, 'idp_issuer'), tokenEndpoint: need(ctx.idp_token_endpoint, 'idp_token_endpoint'), clientId: need(ctx.idp_client_id, 'idp_client_id') },
      subjectToken: ctx.idp_id_token,
    })
    return { clientId: need(ctx.client_id, 'client_id'), clientAuth: clientSecretBasic(need(ctx.client_secret, 'client_secret')), grant, dpop }
  }
  if (ctx.valid_jwt !== undefined) {
    // RFC 7523 JWT bearer (workload identity federation); the AS takes `none` client auth.
    return { clientId: need(ctx.client_id, 'client_id'), clientAuth: noClientAuth(), grant: jwtBearer({ assertion: ctx.valid_jwt }), dpop }
  }
  if (ctx.private_key_pem !== undefined) {
    const alg = ctx.signing_algorithm as DpopAlg | undefined
    return { clientId: need(ctx.client_id, 'client_id'), clientAuth: privateKeyJwt(ctx.private_key_pem, alg ? { alg } : {}), grant: clientCredentials(), dpop }
  }
  if (ctx.client_secret !== undefined) {
    return { clientId: need(ctx.client_id, 'client_id'), clientAuth: clientSecretBasic(ctx.client_secret), grant: clientCredentials(), dpop }
  }
  // auth/dpop, auth/dpop-nonce, auth/metadata-issuer-mismatch, auth/resource-mismatch: no credentials
  // given; a public workload client (token_endpoint_auth_method "none") with the client_credentials grant.
  return { clientId: ctx.client_id ?? PUBLIC_CLIENT_ID, clientAuth: noClientAuth(), grant: clientCredentials(), dpop }
}

function need(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw Object.assign(new Error(`MCP_CONFORMANCE_CONTEXT has no ${what}`), { code: 'ERR_CONTEXT' })
  return value
}

/** `code: message`, then each cause, for stderr. */
function describe(err: unknown): string {
  const lines: string[] = []
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      const code = (e as { code?: unknown }).code
      lines.push(`${depth === 0 ? '' : '  caused by: '}${code !== undefined ? `${String(code)}: ` : `${e.name}: `}${e.message}`)
      e = (e as { cause?: unknown }).cause
    } else {
      lines.push(`${depth === 0 ? '' : '  caused by: '}${String(e)}`)
      break
    }
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  const serverUrl = process.argv.at(-1)
  if (!serverUrl || !/^https?:\/\//.test(serverUrl)) throw Object.assign(new Error('usage: mcp-client.ts <server-url>'), { code: 'ERR_USAGE' })
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? ''
  const ctx = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}') as ConformanceContext
  const creds = credentialsFor(scenario, ctx)

  const session: Session = createSession({
    // no issuer: RFC 9728 discovery starting at the MCP server. A workload that authenticates to its
    // AS follows the metadata only to an AS it trusts: here, one on the MCP server's own host.
    trustedIssuers: (issuer) => new URL(issuer).hostname === new URL(serverUrl).hostname,
    clientId: creds.clientId,
    clientAuth: creds.clientAuth,
    grant: creds.grant,
    ...(creds.dpop ? { dpop: await generateDpopKey() } : {}),
  })
  session.events.on('token.acquired', (e) => console.error(`[bound] token acquired: ${e.type} via ${e.grant} in ${e.attempts} request(s)`))
  session.events.on('token.failed', (e) => console.error(`[bound] token request failed: ${e.code}: ${e.message}`))
  session.events.on('nonce.challenge', (e) => console.error(`[bound] DPoP nonce challenge from the ${e.at} ${e.origin}`))

  // Bound's defaults: exact RFC 9728 `resource` matching, metadata only from the server's own origin.
  const fetch = createBoundFetch({ session, origins: [new URL(serverUrl).origin] })
  const client = new Client({ name: 'bound-conformance-client', version: '0.1.0' }, { capabilities: {} })
  // Transport errors outside a request (e.g. the optional GET SSE stream the server does not serve)
  // are reported, not fatal; a failed request rejects the call that made it.
  client.onerror = (err) => console.error(`[transport] ${describe(err)}`)
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { fetch })
  try {
    await client.connect(transport)
    const { tools } = await client.listTools()
    console.error(`[mcp] tools: ${tools.map((t) => t.name).join(', ') || '(none)'}`)
    const tool = tools.find((t) => t.name === 'test-tool') ?? tools[0]
    if (!tool) throw Object.assign(new Error('The server lists no tools'), { code: 'ERR_NO_TOOLS' })
    const result = await client.callTool({ name: tool.name, arguments: {} })
    if (result.isError) throw Object.assign(new Error(`Tool ${tool.name} failed: ${JSON.stringify(result.content).slice(0, 300)}`), { code: 'ERR_TOOL' })
    console.error(`[mcp] called ${tool.name}: ${JSON.stringify(result.content).slice(0, 200)}`)
  } finally {
    await client.close().catch(() => {})
    await session.close().catch(() => {})
  }
}

// Never hang the runner: give up well before its per-scenario timeout.
const watchdog = setTimeout(() => {
  console.error('ERR_TIMEOUT: the client did not finish within 25 s')
  process.exit(1)
}, 25_000)
watchdog.unref()

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(describe(err))
    process.exit(1)
  },
)
