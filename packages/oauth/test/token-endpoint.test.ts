import { describe, expect, it } from 'vitest'
import { generateDpopKey, createDpop } from '@bound/dpop'
import { TokenEndpointError, systemClock } from '@bound/core'
import { clientCredentials, privateKeyJwt, requestTokenFromEndpoint, type TokenRequestContext } from '../src/index.js'
import { generateKeyPairSync } from 'node:crypto'

// A scripted transport (unit level; the integration suite uses the real AS).
type Reply = { status: number; body: string; headers?: Record<string, string> }
function scripted(replies: Reply[]) {
  const seen: { headers: Record<string, string>; body: URLSearchParams }[] = []
  const fetch = (async (_url: string, init: { headers: Record<string, string>; body: string }) => {
    seen.push({ headers: init.headers, body: new URLSearchParams(init.body) })
    const r = replies.shift()
    if (!r) throw new Error('no more replies')
    return new Response(r.body, { status: r.status, headers: r.headers })
  }) as unknown as TokenRequestContext['fetch']
  return { fetch, seen }
}
const decode = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString())

async function ctx(fetch: TokenRequestContext['fetch'], over: Partial<TokenRequestContext> = {}): Promise<TokenRequestContext> {
  return {
    endpoint: 'https://as.example.com/token', issuer: 'https://as.example.com', clientId: 'c1',
    clientAuth: privateKeyJwt(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    grant: clientCredentials({ resource: 'https://api.example.com' }), resource: 'https://api.example.com', scope: 'orders:read', extra: {},
    dpop: createDpop({ key: await generateDpopKey() }), fetch, clock: systemClock, ...over,
  }
}
const ok = JSON.stringify({ access_token: 'at-1', token_type: 'DPoP', expires_in: 60 })
const nonceError = (n: string): Reply => ({ status: 400, body: JSON.stringify({ error: 'use_dpop_nonce', error_description: 'Authorization server requires nonce in DPoP proof' }), headers: { 'DPoP-Nonce': n } })

describe('requestTokenFromEndpoint', () => {
  it('T-7 S1 DPOP-16 JWTA-04: answers use_dpop_nonce once with a new proof and a new assertion', async () => {
    const { fetch, seen } = scripted([nonceError('eyJ7S_zG.eyJH0-Z.HX4w-7v'), { status: 200, body: ok }])
    const result = await requestTokenFromEndpoint(await ctx(fetch))
    expect(result).toMatchObject({ type: 'DPoP', attempts: 2, response: { access_token: 'at-1', expires_in: 60 } })
    const [first, second] = seen.map((s) => ({ proof: decode(s.headers.dpop!), assertion: decode(s.body.get('client_assertion')!) }))
    expect(first!.proof.nonce).toBeUndefined()
    expect(second!.proof.nonce).toBe('eyJ7S_zG.eyJH0-Z.HX4w-7v')
    expect(second!.proof.jti).not.toBe(first!.proof.jti)
    expect(second!.assertion.jti).not.toBe(first!.assertion.jti)
    expect(seen[0]!.body.get('resource')).toBe('https://api.example.com')
    expect(seen[0]!.body.get('grant_type')).toBe('client_credentials')
  })
  it('DPOP-22: a second nonce challenge is returned as the AS error, not retried again', async () => {
    const { fetch, seen } = scripted([nonceError('n1'), nonceError('n2'), { status: 200, body: ok }])
    await expect(requestTokenFromEndpoint(await ctx(fetch))).rejects.toMatchObject({ code: 'ERR_TOKEN_ENDPOINT', error: 'use_dpop_nonce', status: 400 })
    expect(seen).toHaveLength(2)
  })
  it('DPOP-21: 401 with use_dpop_nonce JSON also triggers the one retry', async () => {
    const { fetch } = scripted([{ ...nonceError('n1'), status: 401 }, { status: 200, body: ok }])
    expect((await requestTokenFromEndpoint(await ctx(fetch))).attempts).toBe(2)
  })
  it('T-7 S5 DPOP-20: use_dpop_nonce without a DPoP-Nonce header is a typed error, no retry', async () => {
    const { fetch, seen } = scripted([{ status: 400, body: JSON.stringify({ error: 'use_dpop_nonce' }) }])
    await expect(requestTokenFromEndpoint(await ctx(fetch))).rejects.toMatchObject({ code: 'ERR_DPOP_NONCE_INVALID' })
    expect(seen).toHaveLength(1)
  })
  it('T-7 S8 DPOP-13: token_type Bearer to a DPoP request is ERR_TOKEN_TYPE_MISMATCH; "dpop" in any case is accepted', async () => {
    const { fetch } = scripted([{ status: 200, body: JSON.stringify({ access_token: 'x', token_type: 'Bearer', expires_in: 60 }) }])
    await expect(requestTokenFromEndpoint(await ctx(fetch))).rejects.toMatchObject({ code: 'ERR_TOKEN_TYPE_MISMATCH' })
    const { fetch: f2 } = scripted([{ status: 200, body: JSON.stringify({ access_token: 'x', token_type: 'dpop' }) }])
    expect((await requestTokenFromEndpoint(await ctx(f2))).type).toBe('DPoP')
    const { fetch: f3 } = scripted([{ status: 200, body: JSON.stringify({ access_token: 'x', token_type: 'N_A' }) }])
    await expect(requestTokenFromEndpoint(await ctx(f3))).rejects.toMatchObject({ code: 'ERR_TOKEN_TYPE_MISMATCH' })
  })
  it('CHAL-17: RFC 6749 error bodies become TokenEndpointError with error, description, status, Retry-After', async () => {
    const { fetch } = scripted([{ status: 401, body: JSON.stringify({ error: 'invalid_client', error_description: 'client authentication failed' }), headers: { 'Retry-After': '7' } }])
    const err = await requestTokenFromEndpoint(await ctx(fetch)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TokenEndpointError)
    expect(err).toMatchObject({ error: 'invalid_client', error_description: 'client authentication failed', status: 401, retryAfter: 7 })
  })
  it.each([
    ['HTML', '<html>oops</html>'],
    ['truncated JSON', '{"access_token":"x","token_ty'],
    ['missing access_token', JSON.stringify({ token_type: 'DPoP' })],
    ['expires_in a word', JSON.stringify({ access_token: 'x', token_type: 'DPoP', expires_in: 'soon' })],
    ['expires_in negative', JSON.stringify({ access_token: 'x', token_type: 'DPoP', expires_in: -5 })],
    ['expires_in 0', JSON.stringify({ access_token: 'x', token_type: 'DPoP', expires_in: 0 })],
    ['expires_in huge', JSON.stringify({ access_token: 'x', token_type: 'DPoP', expires_in: 1e12 })],
  ])('a 200 with %s is ERR_TOKEN_RESPONSE_INVALID and echoes no token', async (_name, body) => {
    const { fetch } = scripted([{ status: 200, body }])
    const err = await requestTokenFromEndpoint(await ctx(fetch)).catch((e: unknown) => e) as Error
    expect(err).toMatchObject({ code: 'ERR_TOKEN_RESPONSE_INVALID' })
    expect(err.message).not.toContain('access_token":"x')
  })
  it('caps the body size', async () => {
    const { fetch } = scripted([{ status: 200, body: 'x'.repeat(2_000_000) }])
    await expect(requestTokenFromEndpoint(await ctx(fetch))).rejects.toMatchObject({ code: 'ERR_TOKEN_RESPONSE_INVALID', message: expect.stringContaining('larger than') })
  })
  it('a network failure is ERR_NETWORK with the cause', async () => {
    const fetch = (async () => { throw Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) }) }) as unknown as TokenRequestContext['fetch']
    await expect(requestTokenFromEndpoint(await ctx(fetch))).rejects.toMatchObject({ code: 'ERR_NETWORK', message: expect.stringContaining('ECONNREFUSED') })
  })
})

describe('token response hygiene', () => {
  it('AT-02: an access_token that is not a b64token is refused without echoing it', async () => {
    const { fetch } = scripted([{ status: 200, body: JSON.stringify({ access_token: 'SECRET-AT\r\nX-Injected: 1', token_type: 'DPoP', expires_in: 60 }) }])
    const err = await requestTokenFromEndpoint(await ctx(fetch)).catch((e: unknown) => e) as Error
    expect(err).toMatchObject({ code: 'ERR_TOKEN_RESPONSE_INVALID' })
    expect(JSON.stringify(err) + err.message).not.toContain('SECRET-AT')
  })
})

describe('refresh grant and the nonce retry (RFC 9449 §8)', () => {
  it('re-sends the same refresh token only when the AS refused the proof (use_dpop_nonce) before using it', async () => {
    const { refreshWith } = await import('../src/grants.js')
    const { fetch, seen } = scripted([nonceError('n1'), { status: 400, body: JSON.stringify({ error: 'invalid_grant' }) }])
    const grant = refreshWith('rt-1', { resource: undefined, scope: undefined })
    await expect(requestTokenFromEndpoint(await ctx(fetch, { grant }))).rejects.toMatchObject({ error: 'invalid_grant' })
    expect(seen.map((s) => s.body.get('refresh_token'))).toEqual(['rt-1', 'rt-1'])
    expect(seen).toHaveLength(2) // invalid_grant (the RT was looked at) is never retried
  })
})

describe('DPOP-25: the AS alg list', () => {
  it('a session whose key the AS does not accept fails with ERR_DPOP_ALG_UNSUPPORTED naming both, before any token request', async () => {
    const { createSession, clientCredentials, clientSecretBasic } = await import('../src/index.js')
    const requests: string[] = []
    const transport = {
      hasClientCertificate: false,
      clientCertificate: undefined,
      dispatch: undefined as never,
      close: async () => {},
      anonymousFetch: (async () => new Response('')) as never,
      request: (async () => { throw new Error('not used') }) as never,
      fetch: (async (url: string) => {
        requests.push(String(url))
        return new Response(JSON.stringify({ issuer: 'https://as.example.com', token_endpoint: 'https://as.example.com/token', dpop_signing_alg_values_supported: ['PS256'] }), { headers: { 'content-type': 'application/json' } })
      }) as never,
    }
    const session = createSession({ issuer: 'https://as.example.com', clientId: 'c', clientAuth: clientSecretBasic('s'), grant: clientCredentials(), dpop: await generateDpopKey(), transport })
    const err = await session.token().catch((e: unknown) => e) as Error
    expect(err).toMatchObject({ code: 'ERR_DPOP_ALG_UNSUPPORTED' })
    expect(err.message).toMatch(/PS256.*ES256/)
    expect(requests.every((u) => u.includes('/.well-known/'))).toBe(true)
  })
})

describe('parseTokenResponse under fuzzing (a sample; npm run fuzz runs 100,000)', () => {
  it('never throws anything but a typed BoundError, and never echoes the token', async () => {
    const fc = (await import('fast-check')).default
    const { parseTokenResponse } = await import('../src/index.js')
    const { BoundError } = await import('@bound/core')
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), fc.record({ access_token: fc.oneof(fc.string(), fc.integer()), token_type: fc.oneof(fc.constantFrom('DPoP', 'Bearer'), fc.string()), expires_in: fc.oneof(fc.integer(), fc.string()) }, { requiredKeys: [] })), (json) => {
      try {
        parseTokenResponse(json, 'fuzz', { dpop: true })
      } catch (err) {
        expect(err).toBeInstanceOf(BoundError)
        const at = (json as { access_token?: unknown } | null)?.access_token
        if (typeof at === 'string' && at.length > 8) expect((err as Error).message).not.toContain(at)
      }
    }), { numRuns: 2000 })
  })
})
