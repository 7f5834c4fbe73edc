// Enterprise-managed authorization (issue 17): identityAssertionGrant against the testkit's
// enterprise IdP (ID-JAGs by RFC 8693 token exchange), its authorization server (ID-JAGs redeemed
// with the RFC 7523 JWT bearer grant, verified against the IdP's JWKS) and its verifying resource
// server. IDs: docs/checklist.md (IDJAG-xx are the draft's and the MCP extension's rules).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTestkit, type IdentityProvider, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { IdentityProviderError, TokenEndpointError } from '@bound/core'
import { clientSecretBasic, clientSecretPost, createSession, identityAssertionGrant, jwtBearer, privateKeyJwt, type IdentityAssertionGrantOptions, type Session, type SessionOptions } from '@bound/oauth'
import { createDpop, generateDpopKey, type Dpop, type DpopKey } from '@bound/dpop'
import { createTransport } from '@bound/http'

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
let kit: Testkit
let idp: IdentityProvider
const sessions: Session[] = []
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

beforeAll(async () => {
  kit = await startTestkit({ idp: true })
  idp = kit.idp!
})
afterAll(async () => {
  await Promise.all(sessions.map((s) => s.close()))
  await kit?.close()
})
afterEach(() => {
  // each test leaves the IdP and the AS as it found them
  idp.resumeIssuing()
  idp.setIdJagTtlSeconds(300)
  idp.allowApp({ clientId: idp.clients.secretPost.clientId, audience: kit.issuer, clientIdAtAudience: kit.clients.secretBasic.clientId })
  kit.as.setIdJagSingleUse(true)
  kit.as.addResource({ resource: kit.resource, accessTokenTtlSeconds: 300 })
  kit.as.setTokenResponseFault(undefined)
})

/** The agent: `secret-post` (client_secret_post) at the IdP, `secret-basic` (client_secret_basic) at the resource AS. */
async function agent(grant: Partial<IdentityAssertionGrantOptions> = {}, over: Partial<SessionOptions> = {}) {
  const atIdp = idp.clients.secretPost
  const atAs = kit.clients.secretBasic
  const session = createSession({
    issuer: kit.issuer,
    clientId: atAs.clientId,
    clientAuth: clientSecretBasic(atAs.clientSecret),
    grant: identityAssertionGrant({
      idp: { issuer: idp.issuer, clientId: atIdp.clientId, clientAuth: clientSecretPost(atIdp.clientSecret) },
      subjectToken: await idp.mintIdToken(),
      resource: kit.resource,
      scope: 'orders:read',
      ...grant,
    }),
    dpop: await generateDpopKey(),
    ca: kit.ca,
    ...over,
  })
  sessions.push(session)
  return { session, fetch: createBoundFetch({ session, origins: [kit.api] }) }
}

/** ID-JAGs issued by the IdP and redeemed at the AS so far. */
const chains = () => ({ issued: idp.as.counters().idJagsIssued, redeemed: kit.as.counters().idJagsRedeemed })

describe('identityAssertionGrant: the chain (IdP → ID-JAG → resource AS → API)', () => {
  it('TXE-01/JWTA-05/DPOP-12: the full chain with a DPoP proof at every hop — the ID-JAG bound to the key (cnf.jkt), the access token DPoP-bound', async () => {
    const before = chains()
    const idpBefore = idp.as.counters()
    const { session, fetch } = await agent()
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ binding: 'dpop', sub: 'alice@acme.example', client_id: kit.clients.secretBasic.clientId, scope: 'orders:read', jkt: session.dpop!.jkt })
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 1 })
    // what the IdP issued: for the resource AS, its client there, the API and scope, bound to the session's key
    expect(idp.issued().at(-1)).toMatchObject({ aud: kit.issuer, clientId: kit.clients.secretBasic.clientId, idpClientId: idp.clients.secretPost.clientId, resource: kit.resource, scope: 'orders:read', jkt: session.dpop!.jkt, sub: 'alice@acme.example' })
    // the IdP demanded a DPoP nonce, and the exchange carried a proof with it (DPOP-16 at the IdP)
    expect(idp.as.counters().nonceChallenges).toBeGreaterThan(idpBefore.nonceChallenges)
    expect(idp.as.counters().byClient[idp.clients.secretPost.clientId]).toBeGreaterThan(idpBefore.byClient[idp.clients.secretPost.clientId] ?? 0)
  })

  it('IDJAG-04: a refresh token the resource AS returns anyway is never used — every new token asks the IdP again', async () => {
    const { session } = await agent({ scope: 'orders:read offline_access' })
    const grants: string[] = []
    session.events.on('token.acquired', (e) => grants.push(e.grant))
    kit.as.resetCounters()
    const before = chains()
    await session.token()
    await session.forceRefresh()
    expect(grants).toEqual([JWT_BEARER, JWT_BEARER])
    expect(kit.as.counters().byGrant['refresh_token'] ?? 0).toBe(0)
    expect(chains().issued).toBe(before.issued + 2)
  })

  it('client authentication at each hop is independent: private_key_jwt at the IdP (its own client id), client_secret_basic at the resource AS', async () => {
    const c = idp.clients.privateKeyJwt
    idp.allowApp({ clientId: c.clientId, audience: kit.issuer, clientIdAtAudience: kit.clients.secretBasic.clientId })
    const { fetch } = await agent({
      idp: { issuer: idp.issuer, clientId: c.clientId, clientAuth: privateKeyJwt(c.privateJwk, { kid: c.kid }) },
      subjectToken: await idp.mintIdToken({ clientId: c.clientId, sub: 'bob@acme.example' }),
    })
    expect(await (await fetch(`${kit.api}/orders`)).json()).toMatchObject({ binding: 'dpop', sub: 'bob@acme.example', client_id: kit.clients.secretBasic.clientId })
    expect(idp.issued().at(-1)).toMatchObject({ idpClientId: c.clientId, clientId: kit.clients.secretBasic.clientId })
  })

  it('GRANT-07: 1,000 concurrent callers → one chain run (one ID-JAG, one redemption)', async () => {
    const { session } = await agent()
    const before = chains()
    const tokens = await Promise.all(Array.from({ length: 1_000 }, () => session.token()))
    expect(new Set(tokens.map((t) => t.value)).size).toBe(1)
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 1 })
  })

  it('CHAL-13/GRANT-08: invalid_token at the API → exactly one new chain run, and the request succeeds', async () => {
    const { session, fetch } = await agent()
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const first = await session.token()
    kit.rs.revokeToken(first.value)
    const before = chains()
    const res = await fetch(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 1 })
    expect((await session.token()).value).not.toBe(first.value)
  })
})

describe('identityAssertionGrant: the ID-JAG and the access token live apart', () => {
  it('IDJAG-04: by default every new access token runs the whole chain — an access token outlives its ID-JAG, and its refresh asks the IdP again', async () => {
    idp.setIdJagTtlSeconds(2)
    const { session } = await agent({}, { refresh: { background: false } })
    const before = chains()
    const first = await session.token()
    await sleep(2_300) // the ID-JAG has expired; the access token (300 s) has not
    expect((await session.token()).value).toBe(first.value)
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 1 })
    await session.forceRefresh()
    expect(chains()).toEqual({ issued: before.issued + 2, redeemed: before.redeemed + 2 })
  })

  it('IDJAG-05: reuseIdJag — access tokens are earned with the held ID-JAG while it lives (no IdP round trip); once it has expired, the IdP is asked again', async () => {
    kit.as.setIdJagSingleUse(false) // an AS that takes an ID-JAG until it expires (the draft allows it)
    kit.as.addResource({ resource: kit.resource, accessTokenTtlSeconds: 2 })
    idp.setIdJagTtlSeconds(5)
    const { session } = await agent({ reuseIdJag: true }, { refresh: { background: false } })
    const before = chains()
    const a = await session.token() // t0: ID-JAG #1 (usable until t0 + 3.75 s), access token A (until t0 + 1.5 s)
    await sleep(2_100)
    const b = await session.token() // A has expired: B, earned with ID-JAG #1 again
    expect(b.value).not.toBe(a.value)
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 2 })
    await sleep(1_900) // t0 + 4 s: B has expired, and so has ID-JAG #1
    const c = await session.token()
    expect(c.value).not.toBe(b.value)
    expect(chains()).toEqual({ issued: before.issued + 2, redeemed: before.redeemed + 3 })
  })

  it('IDJAG-06: reuseIdJag against an AS that takes each ID-JAG once (MCP profile): the refused replay is followed by one fresh chain, and Bound stops re-presenting', async () => {
    const { session } = await agent({ reuseIdJag: true })
    await session.token()
    const before = chains()
    const errorsBefore = kit.as.counters().tokenErrors
    await session.forceRefresh() // re-presents ID-JAG #1: invalid_grant (jti already used) → a fresh ID-JAG
    expect(chains()).toEqual({ issued: before.issued + 1, redeemed: before.redeemed + 1 })
    expect(kit.as.counters().tokenErrors).toBe(errorsBefore + 1)
    await session.forceRefresh() // learned: straight to the IdP, no refused attempt
    expect(chains()).toEqual({ issued: before.issued + 2, redeemed: before.redeemed + 2 })
    expect(kit.as.counters().tokenErrors).toBe(errorsBefore + 1)
  })
})

describe('identityAssertionGrant: refusals name the hop', () => {
  it('IDJAG-07: the IdP refuses an expired ID token: IdentityProviderError (ERR_IDP_REFUSED, hop idp, invalid_grant) with the IdP’s reason; the resource AS is never asked', async () => {
    const expired = await idp.mintIdToken({ ttlSeconds: -60 })
    const { session } = await agent({ subjectToken: expired })
    const asBefore = kit.as.counters().tokenRequests
    const err = await session.token().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(IdentityProviderError)
    expect(err).toBeInstanceOf(TokenEndpointError)
    expect(err).toMatchObject({ code: 'ERR_IDP_REFUSED', hop: 'idp', error: 'invalid_grant', error_description: 'the ID token has expired', status: 400 })
    expect(String((err as Error).message)).toContain('identity provider’s token endpoint')
    expect(JSON.stringify(err)).not.toContain(expired)
    expect(kit.as.counters().tokenRequests).toBe(asBefore)
  })

  it('IDJAG-07: the IdP refuses an app it does not allow here: access_denied, typed as the IdP’s', async () => {
    const c = idp.clients.secretBasic // a registration at the IdP that the enterprise has not allowed at kit.issuer
    const { session } = await agent({ idp: { issuer: idp.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret) }, subjectToken: await idp.mintIdToken({ clientId: c.clientId }) })
    await expect(session.token()).rejects.toMatchObject({ name: 'IdentityProviderError', code: 'ERR_IDP_REFUSED', error: 'access_denied', error_description: expect.stringContaining(`does not allow ${c.clientId}`) })
  })

  it('IDJAG-08: the resource AS refuses the ID-JAG: TokenEndpointError (ERR_TOKEN_ENDPOINT), not the IdP’s, naming the AS', async () => {
    const { session } = await agent({ resource: 'https://unknown-api.example/v1' }) // the IdP issues it; the AS knows no such resource
    const err = await session.token().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(TokenEndpointError)
    expect(err).not.toBeInstanceOf(IdentityProviderError)
    expect(err).toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_target' })
    expect(String((err as Error).message)).toContain(`${kit.issuer}/token`)
    expect(idp.issued().at(-1)).toMatchObject({ resource: 'https://unknown-api.example/v1' })
  })

  it('IDJAG-02: an ID-JAG for another authorization server is not sent on (aud checked before the second hop)', async () => {
    const other = 'https://other-as.example'
    idp.allowApp({ clientId: idp.clients.secretPost.clientId, audience: other, clientIdAtAudience: kit.clients.secretBasic.clientId })
    const { session } = await agent({ audience: other })
    const asBefore = kit.as.counters().tokenRequests
    const err = await session.token().then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_TOKEN_UNAVAILABLE', message: expect.stringContaining(`its aud is "${other}", not the session’s authorization server ${kit.issuer}`) })
    expect(kit.as.counters().tokenRequests).toBe(asBefore)
  })

  it('DPOP-13: a Bearer answer at the resource AS for a DPoP request fails closed, as for every grant', async () => {
    const { session } = await agent()
    kit.as.setTokenResponseFault((body) => ({ ...body, token_type: 'Bearer' }))
    await expect(session.token()).rejects.toMatchObject({ code: 'ERR_TOKEN_TYPE_MISMATCH' })
  })

  it('IDJAG-03: a session acts for one user: a subject token for another user is refused before it leaves', async () => {
    let user = 'alice@acme.example'
    const tokens = new Map<string, string>()
    for (const sub of ['alice@acme.example', 'mallory@acme.example']) tokens.set(sub, await idp.mintIdToken({ sub }))
    const { session } = await agent({ subjectToken: () => tokens.get(user)! })
    await session.token()
    user = 'mallory@acme.example'
    const issued = idp.as.counters().idJagsIssued
    await expect(session.forceRefresh()).rejects.toMatchObject({ code: 'ERR_INVALID_INPUT', message: expect.stringContaining('one session per user') })
    expect(idp.as.counters().idJagsIssued).toBe(issued)
  })
})

describe('identityAssertionGrant: the IdP stays in charge', () => {
  it('IDJAG-09: the IdP stops allowing the app → the held token is served until it expires and not refreshed; the next chain fails typed', async () => {
    const { session } = await agent()
    const held = await session.token()
    idp.refuseApp(idp.clients.secretPost.clientId)
    expect((await session.token()).value).toBe(held.value) // still valid at the resource AS
    await expect(session.forceRefresh()).rejects.toMatchObject({ code: 'ERR_IDP_REFUSED', error: 'access_denied' })
    idp.stopIssuing()
    idp.allowApp({ clientId: idp.clients.secretPost.clientId, audience: kit.issuer, clientIdAtAudience: kit.clients.secretBasic.clientId })
    await expect(session.forceRefresh()).rejects.toMatchObject({ code: 'ERR_IDP_REFUSED', error: 'access_denied', error_description: expect.stringContaining('issues no ID-JAGs') })
  })

  it('IDJAG-10: close({ revoke: true }) revokes the access token at the resource AS and the ID-JAG at the IdP', async () => {
    kit.as.setIdJagSingleUse(false)
    const { session, fetch } = await agent({ reuseIdJag: true })
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    const token = await session.token()
    const jti = idp.issued().at(-1)!.jti
    const revocations = { idp: idp.as.counters().revocations, as: kit.as.counters().revocations }
    await session.close({ revoke: true })
    expect(idp.as.counters().revocations).toBe(revocations.idp + 1)
    expect(kit.as.counters().revocations).toBeGreaterThanOrEqual(revocations.as + 1)
    expect(idp.isRevoked(jti)).toBe(true)
    // the API refuses the access token from now on
    const probe = createSession({ issuer: kit.issuer, clientId: 'x', grant: identityAssertionGrant({ idp: { issuer: idp.issuer, clientId: 'x' }, subjectToken: 'x' }), ca: kit.ca })
    const res = await probe.transport.fetch(`${kit.api}/orders`, { headers: { authorization: `DPoP ${token.value}`, dpop: await session.dpop!.proof('GET', `${kit.api}/orders`, { accessToken: token.value }) } })
    expect(res.status).toBe(401)
    await probe.close()
  })
})

describe('the testkit’s resource AS verifies ID-JAGs (real servers, verified tokens)', () => {
  /** An ID-JAG straight from the IdP (client_secret_post), bound when `dpop` is given. */
  async function idJagFromIdp(dpop?: Dpop): Promise<string> {
    const c = idp.clients.secretPost
    const transport = createTransport({ ca: kit.ca })
    const body = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', requested_token_type: 'urn:ietf:params:oauth:token-type:id-jag', audience: kit.issuer, resource: kit.resource, scope: 'orders:read', subject_token: await idp.mintIdToken(), subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', client_id: c.clientId, client_secret: c.clientSecret })
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...(dpop ? { dpop: await dpop.proof('POST', idp.tokenEndpoint) } : {}) }
        const res = await transport.fetch(idp.tokenEndpoint, { method: 'POST', headers, body: body.toString() })
        dpop?.observe(idp.tokenEndpoint, res.headers)
        const json = (await res.json()) as { access_token?: string; issued_token_type?: string; token_type?: string }
        if (res.status === 200) {
          expect(json).toMatchObject({ issued_token_type: 'urn:ietf:params:oauth:token-type:id-jag', token_type: 'N_A' })
          return json.access_token!
        }
      }
      throw new Error('the IdP issued no ID-JAG')
    } finally {
      await transport.close()
    }
  }
  /** Redeems `assertion` with the plain JWT bearer grant as the session's client (`secret-basic`). */
  async function redeem(assertion: string, key?: DpopKey) {
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: jwtBearer({ assertion, resource: kit.resource }), ...(key ? { dpop: key } : {}), ca: kit.ca })
    sessions.push(session)
    return session.token()
  }

  it('IDJAG-11: an ID-JAG is redeemed once: its jti is consumed (the MCP profile’s replay rule)', async () => {
    const idJag = await idJagFromIdp()
    await expect(redeem(idJag)).resolves.toMatchObject({ type: 'Bearer' })
    await expect(redeem(idJag)).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_grant', error_description: 'ID-JAG jti was already used' })
  })

  it('IDJAG-11: a forged ID-JAG (right claims, another key) is refused', async () => {
    const forger = await generateDpopKey()
    const now = Math.floor(Date.now() / 1000)
    const part = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url')
    const input = `${part({ alg: 'ES256', typ: 'oauth-id-jag+jwt' })}.${part({ iss: idp.issuer, sub: 'alice@acme.example', aud: kit.issuer, client_id: kit.clients.secretBasic.clientId, jti: 'forged-1', iat: now, exp: now + 300, resource: kit.resource })}`
    const forged = `${input}.${Buffer.from(await forger.sign(Buffer.from(input))).toString('base64url')}`
    await expect(redeem(forged)).rejects.toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('does not verify') })
  })

  it('IDJAG-11: an ID-JAG for another client at the AS is refused (client_id must be the authenticated client)', async () => {
    idp.allowApp({ clientId: idp.clients.secretPost.clientId, audience: kit.issuer, clientIdAtAudience: kit.clients.secretPost.clientId })
    await expect(redeem(await idJagFromIdp())).rejects.toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('another client') })
  })

  it('IDJAG-11: an ID-JAG bound to a key (cnf.jkt) needs a proof of that key: another key’s proof, or none, is refused', async () => {
    const key = await generateDpopKey()
    const idJag = await idJagFromIdp(createDpop({ key }))
    expect(idp.issued().at(-1)?.jkt).toBe(key.jkt)
    await expect(redeem(idJag, await generateDpopKey())).rejects.toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('not made with the key') })
    await expect(redeem(idJag)).rejects.toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('a DPoP proof of it is required') })
    await expect(redeem(idJag, key)).resolves.toMatchObject({ type: 'DPoP', binding: { jkt: key.jkt } })
  })

  it('IDJAG-11: an ID-JAG its IdP revoked (RFC 7009 at the IdP) is refused', async () => {
    const idJag = await idJagFromIdp()
    const c = idp.clients.secretPost
    const transport = createTransport({ ca: kit.ca })
    const res = await transport.fetch(idp.revocationEndpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: idJag, client_id: c.clientId, client_secret: c.clientSecret }).toString() })
    expect(res.status).toBe(200)
    await transport.close()
    await expect(redeem(idJag)).rejects.toMatchObject({ error: 'invalid_grant', error_description: 'the ID-JAG was revoked by its issuer' })
  })

  it('IDJAG-01: requireBoundIdJag refuses an ID-JAG the IdP did not bind (here: no DPoP proof sent to the IdP)', async () => {
    const c = idp.clients.secretPost
    const { session } = await agent({ idp: { issuer: idp.issuer, clientId: c.clientId, clientAuth: clientSecretPost(c.clientSecret), dpop: false }, requireBoundIdJag: true })
    const redeemed = kit.as.counters().idJagsRedeemed
    await expect(session.token()).rejects.toMatchObject({ code: 'ERR_TOKEN_TYPE_MISMATCH', message: expect.stringContaining('not bound to the session’s DPoP key') })
    expect(kit.as.counters().idJagsRedeemed).toBe(redeemed)
  })
})
