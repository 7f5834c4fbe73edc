import { generateKeyPairSync, verify } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { clientSecretBasic, clientSecretPost, discoveryUrls, formUrlEncode, privateKeyJwt } from '../src/index.js'

const ctx = (over: Partial<{ clientId: string }> = {}) => ({ clientId: over.clientId ?? 's6BhdRkqt3', issuer: 'https://as.example.com', endpoint: 'https://as.example.com/token', body: new URLSearchParams(), headers: {} as Record<string, string>, now: 1_700_000_000 })

describe('client_secret_basic (GRANT-02, T-11)', () => {
  it("matches RFC 6749 §2.3.1's example", () => {
    const c = ctx()
    clientSecretBasic('gX1fBat3bV').apply(c)
    expect(c.headers.authorization).toBe('Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW')
    expect([...c.body.keys()]).toEqual([])
  })
  it('form-url-encodes id and secret before base64 (the common bug is not made)', () => {
    const c = ctx({ clientId: 'my client' })
    clientSecretBasic('p@ss:w+rd/~ü').apply(c)
    expect(c.headers.authorization).toBe('Basic bXkrY2xpZW50OnAlNDBzcyUzQXclMkJyZCUyRiU3RSVDMyVCQw==')
    expect(formUrlEncode('a b~*')).toBe('a+b%7E%2A')
  })
  it('refuses an empty secret with ERR_INVALID_CONFIG', () => {
    expect(() => clientSecretBasic('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })
  it('client_secret_post puts both in the body and nothing in headers', () => {
    const c = ctx()
    clientSecretPost('sec').apply(c)
    expect(Object.fromEntries(c.body)).toEqual({ client_id: 's6BhdRkqt3', client_secret: 'sec' })
    expect(c.headers).toEqual({})
  })
})

describe('private_key_jwt (JWTA-01…04)', () => {
  it('mints a fresh, verifiable assertion with aud = issuer for every request', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const auth = privateKeyJwt(privateKey, { kid: 'k1' })
    const a = ctx(); const b = ctx()
    await auth.apply(a); await auth.apply(b)
    const jwt = a.body.get('client_assertion')!
    expect(a.body.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
    const [h, p, s] = jwt.split('.')
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString())
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString())
    expect(header).toEqual({ alg: 'ES256', typ: 'client-authentication+jwt', kid: 'k1' })
    expect(claims).toMatchObject({ iss: 's6BhdRkqt3', sub: 's6BhdRkqt3', aud: 'https://as.example.com', iat: 1_700_000_000, exp: 1_700_000_060 })
    expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'))).toBe(true)
    const other = JSON.parse(Buffer.from(b.body.get('client_assertion')!.split('.')[1]!, 'base64url').toString())
    expect(other.jti).not.toBe(claims.jti)
  })
  it('the legacy token-endpoint audience is opt-in', async () => {
    const c = ctx()
    await privateKeyJwt(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, { audience: 'token_endpoint' }).apply(c)
    expect(JSON.parse(Buffer.from(c.body.get('client_assertion')!.split('.')[1]!, 'base64url').toString()).aud).toBe('https://as.example.com/token')
  })
})

describe('discoveryUrls (ASM-01, T-8b)', () => {
  it('inserts the well-known segment before the path, then OIDC forms', () => {
    expect(discoveryUrls('https://auth.example.com/tenant1')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
      'https://auth.example.com/.well-known/openid-configuration/tenant1',
      'https://auth.example.com/tenant1/.well-known/openid-configuration',
    ])
    expect(discoveryUrls('https://auth.example.com')).toEqual([
      'https://auth.example.com/.well-known/oauth-authorization-server',
      'https://auth.example.com/.well-known/openid-configuration',
    ])
  })
})
