import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch, getChallenges } from '@bound/fetch'
import {
  clientCredentials,
  clientSecretBasic,
  createSession,
  privateKeyJwt,
  requestTokenFromEndpoint,
  type ClientAuth,
  type Grant,
  type Session,
  type SessionOptions,
} from '@bound/oauth'
import { createDpop, generateDpopKey, type DpopAlg } from '@bound/dpop'
import { systemClock } from '@bound/core'

// What users meet at real vendors, reproduced by the testkit's quirk profiles
// (`startTestkit({ asQuirks, rsQuirks })`, `as.setQuirks()`, `rs.setQuirks()`), each met through
// Bound's fetch wrapper against the real servers.

let kit: Testkit
const sessions: Session[] = []

beforeAll(async () => {
  kit = await startTestkit() // the AS and the RS demand DPoP nonces, as in production profiles
})
beforeEach(() => {
  kit.as.setQuirks(undefined)
  kit.rs.setQuirks(undefined)
  kit.as.resetCounters()
  kit.rs.resetCounters()
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})

interface ClientOptions {
  grant?: Grant
  clientAuth?: ClientAuth
  clientId?: string
  alg?: DpopAlg
  extra?: Partial<SessionOptions>
  on?: Testkit
}

async function boundClient(options: ClientOptions = {}) {
  const on = options.on ?? kit
  const c = on.clients.secretBasic
  const session = createSession({
    issuer: on.issuer,
    clientId: options.clientId ?? c.clientId,
    clientAuth: options.clientAuth ?? clientSecretBasic(c.clientSecret),
    grant: options.grant ?? clientCredentials({ resource: on.resource, scope: 'orders:read' }),
    dpop: await generateDpopKey(options.alg ? { alg: options.alg } : {}),
    ca: on.ca,
    ...options.extra,
  })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [on.api] }) }
}

describe('an AS that names the API with audience, not resource (Auth0-style)', () => {
  beforeEach(() => kit.as.setQuirks({ audienceParameter: true }))

  it('GRANT-01/PRM-14: resource alone is not enough there — the AS answers 403 access_denied and Bound surfaces it', async () => {
    const { fetch } = await boundClient() // clientCredentials({ resource })
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'access_denied', status: 403, error_description: expect.stringContaining('No audience parameter') })
    expect(kit.rs.counters().requests).toBe(0) // nothing reached the API
  })

  it('GRANT-01: clientCredentials({ audience }) earns a token for that API, and the API verifies it', async () => {
    const { session, fetch } = await boundClient({ grant: clientCredentials({ audience: kit.resource, scope: 'orders:read' }) })
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', jkt: session.dpop!.jkt, scope: 'orders:read' })
    // the RS checks aud = its resource: the audience picked the API
    expect(kit.rs.counters()).toMatchObject({ verified: 1, invalidToken: 0, verifierDisagreements: 0 })
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 1, tokenErrors: 0 })
  })

  it('an audience the AS does not know is refused (Service not found), never silently widened', async () => {
    const { fetch } = await boundClient({ grant: clientCredentials({ audience: 'https://elsewhere.example' }) })
    await expect(fetch(`${kit.api}/orders`)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'access_denied', status: 403, error_description: 'Service not found: https://elsewhere.example' })
  })

  it('audience and resource together work at this AS and at a standard (RFC 8707) AS alike', async () => {
    const grant = () => clientCredentials({ audience: kit.resource, resource: kit.resource })
    expect((await (await boundClient({ grant: grant() })).fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.as.setQuirks(undefined) // oidc-provider as it comes: reads resource, ignores audience
    expect((await (await boundClient({ grant: grant() })).fetch(`${kit.api}/orders`)).status).toBe(200)
  })

  it('clientCredentials() checks audience: empty, too long, control characters or surrounding whitespace are ERR_INVALID_CONFIG', () => {
    for (const audience of ['', ' https://api.example', 'https://api.example\n', 'a\u0000b', 'x'.repeat(2049), 42 as unknown as string]) {
      expect(() => clientCredentials({ audience }), JSON.stringify(audience)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
    }
    expect(() => clientCredentials({ audience: 'urn:orders-api' })).not.toThrow() // a logical name, not only a URL
    expect(() => clientCredentials({ audience: 'x'.repeat(2048) })).not.toThrow()
  })
})

describe('an AS whose metadata omits dpop_signing_alg_values_supported', () => {
  it('DPOP-25/ASM-03: Bound does not refuse its key for want of the list; an EdDSA-bound token works', async () => {
    kit.as.setQuirks({ omitDpopSigningAlgs: true })
    const { session, fetch } = await boundClient({ alg: 'EdDSA' })
    const metadata = await session.metadata()
    expect(metadata).toBeDefined()
    expect(metadata).not.toHaveProperty('dpop_signing_alg_values_supported')
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', jkt: session.dpop!.jkt })
    expect(kit.rs.counters().lastProof?.header).toMatchObject({ alg: 'EdDSA' })
    expect(kit.as.counters()).toMatchObject({ tokensIssued: 1, byBinding: { dpop: 1 } })
  })

  it('(control) the standard AS publishes the list', async () => {
    const { session } = await boundClient()
    expect((await session.metadata())?.dpop_signing_alg_values_supported).toContain('EdDSA')
  })
})

describe('an AS whose token response omits expires_in', () => {
  it('GRANT-03: the token is used with the documented default lifetime (defaultLifetimeMs, 300 s), marked as assumed', async () => {
    kit.as.setQuirks({ omitExpiresIn: true })
    const { session, fetch } = await boundClient()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const token = await session.token()
    expect(token.lifetimeAssumed).toBe(true)
    expect(token.expiresAt - token.receivedAt).toBe(300_000)

    const configured = await boundClient({ extra: { defaultLifetimeMs: 60_000 } })
    expect((await configured.fetch(`${kit.api}/orders`)).status).toBe(200)
    const short = await configured.session.token()
    expect(short).toMatchObject({ lifetimeAssumed: true })
    expect(short.expiresAt - short.receivedAt).toBe(60_000)
  })

  it('(control) with expires_in, the lifetime is the AS\'s, not assumed', async () => {
    const { session } = await boundClient()
    const token = await session.token()
    expect(token.lifetimeAssumed).toBe(false)
    expect(token.expiresAt - token.receivedAt).toBe(300_000) // the testkit's accessTokenTtlSeconds
  })

  describe('when the real lifetime is shorter than the assumed one', () => {
    let shortLived: Testkit
    beforeAll(async () => {
      // tokens really live 30 s; the AS does not say so
      shortLived = await startTestkit({ accessTokenTtlSeconds: 30, asQuirks: { omitExpiresIn: true } })
    })
    afterEach(() => {
      vi.useRealTimers()
    })
    afterAll(async () => {
      await shortLived?.close()
    })

    it('GRANT-08/CHAL-13: the API\'s invalid_token makes Bound earn a new token once, and the request succeeds', async () => {
      // Only Date is faked: the AS, the RS and Bound share this process, so all three see the jump.
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() })
      const { session, fetch } = await boundClient({ on: shortLived })
      expect((await fetch(`${shortLived.api}/orders`)).status).toBe(200)
      const first = await session.token()
      expect(first.lifetimeAssumed).toBe(true)

      vi.setSystemTime(Date.now() + 60_000) // past the token's real exp, well inside the assumed 300 s
      shortLived.as.resetCounters()
      shortLived.rs.resetCounters()
      const res = await fetch(`${shortLived.api}/orders`)
      expect(res.status).toBe(200)
      expect(shortLived.rs.counters()).toMatchObject({ invalidToken: 1, verified: 1, verifierDisagreements: 0 })
      expect(shortLived.as.counters().tokensIssued).toBe(1)
      expect((await session.token()).label).not.toBe(first.label)
    })
  })
})

describe('an AS that returns token_type "dpop" in lower case', () => {
  it('DPOP-13: the AS really sends "dpop", and Bound takes it as a DPoP token, sent with the DPoP scheme', async () => {
    kit.as.setQuirks({ lowercaseTokenType: true })
    const { session, fetch } = await boundClient()

    // What the AS sends, read with Bound's own token endpoint client (it keeps token_type as sent).
    const c = kit.clients.secretBasic
    const raw = await requestTokenFromEndpoint({
      endpoint: kit.as.tokenEndpoint, issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret),
      grant: clientCredentials(), resource: kit.resource, scope: 'orders:read', extra: {},
      dpop: createDpop({ key: await generateDpopKey() }), fetch: session.transport.fetch, clock: systemClock,
    })
    expect(raw.response.token_type).toBe('dpop')
    expect(raw.type).toBe('DPoP')

    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect((await session.token()).type).toBe('DPoP')
    // the RS verified a DPoP-scheme request (a Bearer-scheme one would be refused: the token has cnf.jkt)
    expect(kit.rs.seen().at(-1)).toMatchObject({ status: 200, binding: 'dpop', jkt: session.dpop!.jkt })
  })
})

describe('an AS that demands a DPoP nonce on the first token request', () => {
  it('DPOP-16/18 (T-7 S1/S3): one use_dpop_nonce answered with a new proof and a new client assertion; the next token request reuses the nonce', async () => {
    // the testkit's default AS profile (asRequiresNonce: true, oidc-provider's requireNonce); the
    // private_key_jwt client's assertions are single-use, so a replayed one would be invalid_client
    const c = kit.clients.privateKeyJwt
    const { session, fetch } = await boundClient({ clientId: c.clientId, clientAuth: privateKeyJwt(c.privateKey, { kid: c.kid }) })
    const challenges: string[] = []
    session.events.on('nonce.challenge', (e) => challenges.push(e.at))

    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    expect(kit.as.counters()).toMatchObject({ tokenRequests: 2, nonceChallenges: 1, tokensIssued: 1, tokenErrors: 0 })

    await session.forceRefresh()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    // the nonce from the 200 is used: no second challenge
    expect(kit.as.counters()).toMatchObject({ tokenRequests: 3, nonceChallenges: 1, tokensIssued: 2, tokenErrors: 0 })
    expect(challenges.filter((at) => at === 'authorization-server')).toEqual(['authorization-server'])
  })
})

describe('an API that challenges without error (Entra-style WWW-Authenticate)', () => {
  let entra: Testkit
  beforeAll(async () => {
    // Entra ID has no DPoP nonces; every rejection says only Bearer realm="", authorization_uri="…"
    entra = await startTestkit({ rsRequiresNonce: false, rsQuirks: { errorlessChallenges: true } })
  })
  afterAll(async () => {
    await entra?.close()
  })

  it('CHAL-13/CHAL-11: Bound returns the 401 with the parsed challenge, and does not loop or re-earn', async () => {
    const { session, fetch } = await boundClient({ on: entra })
    expect((await fetch(`${entra.api}/orders`)).status).toBe(200)
    const token = await session.token()
    entra.rs.revokeToken(token.value) // the API now refuses the token, but says only "Bearer realm…"
    entra.as.resetCounters()
    entra.rs.resetCounters()

    const res = await fetch(`${entra.api}/orders`)
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="", authorization_uri="${entra.issuer}/auth"`)
    const challenges = getChallenges(res)
    expect(challenges).toHaveLength(1)
    expect(challenges[0]).toMatchObject({ scheme: 'bearer', params: { realm: '', authorization_uri: `${entra.issuer}/auth` } })
    expect(challenges[0]!.error).toBeUndefined()
    expect(challenges[0]!.boundError).toBeUndefined()
    expect(await res.json()).toMatchObject({ error: 'invalid_token' }) // the body keeps what went wrong

    // one request, no retry, no new token: nothing in the challenge says what would help
    expect(entra.rs.counters()).toMatchObject({ requests: 1, rejected: 1 })
    expect(entra.as.counters().tokenRequests).toBe(0)
    expect((await session.token()).label).toBe(token.label)
  })

  it('(control) the standard RS names the error, and Bound answers it by earning a new token', async () => {
    const { session, fetch } = await boundClient()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.revokeToken((await session.token()).value)
    kit.rs.resetCounters()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    expect(kit.rs.counters()).toMatchObject({ requests: 2, invalidToken: 1, verified: 1 })
  })
})
