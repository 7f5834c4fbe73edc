import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { classifyChallenge, parseChallenges } from '../src/index.js'

// The project's challenge-parsing vectors for CHAL-01…CHAL-10 (what each ID requires: docs/checklist.md).
const simple = (scheme: string, params: Record<string, string> = {}) => ({ scheme, params })

describe('parseChallenges (RFC 9110 §11, T-6)', () => {
  it.each([
    ['V01', 'Bearer realm="example"', [simple('bearer', { realm: 'example' })]],
    ['V02', 'Bearer realm="example", error="invalid_token", error_description="The access token expired"', [simple('bearer', { realm: 'example', error: 'invalid_token', error_description: 'The access token expired' })]],
    ['V03', 'DPoP algs="ES256 PS256"', [simple('dpop', { algs: 'ES256 PS256' })]],
    ['V05 CHAL-07', 'Bearer, DPoP algs="ES256 PS256"', [simple('bearer'), simple('dpop', { algs: 'ES256 PS256' })]],
    ['V06', 'Bearer error="invalid_token", error_description="Invalid token", DPoP algs="ES256 PS256"', [simple('bearer', { error: 'invalid_token', error_description: 'Invalid token' }), simple('dpop', { algs: 'ES256 PS256' })]],
    ['V09 CHAL-04', 'Basic realm="simple", Newauth realm="apps", type=1, title="Login to \\"apps\\""', [simple('basic', { realm: 'simple' }), simple('newauth', { realm: 'apps', type: '1', title: 'Login to "apps"' })]],
    ['V16', 'Bearer realm="", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ=="', [simple('bearer', { realm: '', error: 'insufficient_claims', claims: 'eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ==' })]],
    ['V17 CHAL-02', 'bEaReR ReAlM="Example", ERROR="invalid_token"', [simple('bearer', { realm: 'Example', error: 'invalid_token' })]],
    ['V18 CHAL-03', 'Bearer error=invalid_token, scope=read', [simple('bearer', { error: 'invalid_token', scope: 'read' })]],
    ['V19 CHAL-05', 'Bearer realm = "example" , error= "invalid_token"', [simple('bearer', { realm: 'example', error: 'invalid_token' })]],
    ['V20', 'Bearer realm="https://containers.example.com/v2/auth",service="containers.example.com",scope="repository:org/repo:pull,push"', [simple('bearer', { realm: 'https://containers.example.com/v2/auth', service: 'containers.example.com', scope: 'repository:org/repo:pull,push' })]],
    ['V21', 'Bearer scope="say \\"hi, there"', [simple('bearer', { scope: 'say "hi, there' })]],
    ['V22', 'Bearer scope=","', [simple('bearer', { scope: ',' })]],
    ['V23', 'Bearer error_description="C:\\\\path\\\\file"', [simple('bearer', { error_description: 'C:\\path\\file' })]],
    ['V24 CHAL-06', ', Bearer realm="a",, , DPoP algs="ES256",', [simple('bearer', { realm: 'a' }), simple('dpop', { algs: 'ES256' })]],
    ['V25', 'Negotiate YIIB==, Bearer realm="x"', [{ scheme: 'negotiate', token68: 'YIIB==', params: {} }, simple('bearer', { realm: 'x' })]],
    ['V26', 'Bearer, Basic realm="x"', [simple('bearer'), simple('basic', { realm: 'x' })]],
    ['V28', 'DPoP algs="ES256", Bearer scope="files"', [simple('dpop', { algs: 'ES256' }), simple('bearer', { scope: 'files' })]],
    ['V29', 'Bearer realm="a", Bearer realm="b"', [simple('bearer', { realm: 'a' }), simple('bearer', { realm: 'b' })]],
    ['V30 CHAL-09', 'DPoP algs="ES256", foo="bar", error="use_dpop_nonce"', [simple('dpop', { algs: 'ES256', foo: 'bar', error: 'use_dpop_nonce' })]],
    ['V31 CHAL-10', 'Bearer realm="abc', []],
    ['V32 CHAL-10', "Bearer resource_metadata='https://example.com/x'", []],
    ['V34', 'DPoP algs=ES256', [simple('dpop', { algs: 'ES256' })]],
    ['V35', 'Newauth abc=', [{ scheme: 'newauth', token68: 'abc=', params: {} }]],
  ])('%s', (_id, header, expected) => {
    expect(parseChallenges(header)).toEqual(expected)
  })

  it('V07: both challenges carry error (RFC 9449 §7.2)', () => {
    const parsed = parseChallenges('Bearer error="invalid_request", error_description="Multiple methods used to include access token", DPoP algs="ES256 PS256", error="invalid_request", error_description="Multiple methods used to include access token"')
    expect(parsed.map((c) => [c.scheme, c.params.error])).toEqual([['bearer', 'invalid_request'], ['dpop', 'invalid_request']])
  })

  it('V10 CHAL-01: several field lines are combined in order', () => {
    expect(parseChallenges(['Newauth realm="apps", type=1, title="Login to \\"apps\\""', 'Basic realm="simple"']).map((c) => c.scheme)).toEqual(['newauth', 'basic'])
    const headers = new Headers()
    headers.append('WWW-Authenticate', 'DPoP algs="ES256"')
    headers.append('WWW-Authenticate', 'Bearer realm="x"')
    expect(parseChallenges(headers).map((c) => c.scheme)).toEqual(['dpop', 'bearer'])
  })

  it('V27 CHAL-08: a duplicated parameter is treated as absent and reported', () => {
    const [c] = parseChallenges('Bearer realm="OAuth", resource_metadata="https://a.example/.well-known/oauth-protected-resource", error="invalid_token", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp"')
    expect(c?.params).toEqual({ realm: 'OAuth', error: 'invalid_token' })
    expect(c?.duplicateParams).toEqual(['resource_metadata'])
  })

  it('keeps the good challenges around a malformed one', () => {
    expect(parseChallenges('Bearer a=b c, DPoP algs="ES256"').map((c) => c.scheme)).toEqual(['dpop'])
  })

  it('CHAL-10: never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => {
      expect(Array.isArray(parseChallenges(s))).toBe(true)
    }), { numRuns: 2000 })
    fc.assert(fc.property(fc.array(fc.constantFrom('Bearer', 'DPoP', ' ', ',', '=', '"', '\\', 'a', 'realm', '==', '\t', "'"), { maxLength: 60 }), (parts) => {
      expect(Array.isArray(parseChallenges(parts.join('')))).toBe(true)
    }), { numRuns: 2000 })
  })

  it('a header built from random challenges parses back to them', () => {
    const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,11}$/)
    const value = fc.string({ maxLength: 20 }).filter((s) => /^[\x20-\x7e]*$/.test(s))
    const challenge = fc.record({
      scheme: token,
      params: fc.uniqueArray(fc.tuple(token, value), { selector: ([k]) => k.toLowerCase(), maxLength: 5 }),
    })
    fc.assert(fc.property(fc.array(challenge, { maxLength: 5 }), (challenges) => {
      const header = challenges
        .map((c) => c.params.length === 0 ? c.scheme : `${c.scheme} ${c.params.map(([k, v]) => `${k}="${v.replace(/["\\]/g, (m) => `\\${m}`)}"`).join(', ')}`)
        .join(', ')
      const parsed = parseChallenges(header)
      expect(parsed).toEqual(challenges.map((c) => ({ scheme: c.scheme.toLowerCase(), params: Object.fromEntries(c.params.map(([k, v]) => [k.toLowerCase(), v])) })))
    }), { numRuns: 1000 })
  })

  it('CHAL-10: linear time — a 64 KB hostile header costs about 64× a 1 KB one, not more', () => {
    const unit = 'Bearer realm="' + 'a\\"'.repeat(4) + '", x=y, '
    const small = unit.repeat(Math.ceil(1024 / unit.length))
    const large = unit.repeat(Math.ceil(65536 / unit.length))
    const ops = (s: string) => { let n = 0; for (let r = 0; r < 20; r++) n += parseChallenges(s, { maxChallenges: 1e9 }).length; return n }
    const t = (s: string) => { const t0 = process.hrtime.bigint(); ops(s); return Number(process.hrtime.bigint() - t0) }
    t(large); t(small)
    const ratio = Math.min(t(large), t(large)) / Math.max(1, Math.min(t(small), t(small)))
    expect(ratio).toBeLessThan(64 * 8)
  })
})

describe('classifyChallenge', () => {
  const classify = (h: string) => classifyChallenge(parseChallenges(h)[0]!)
  it('V08 DPOP-17: use_dpop_nonce → dpop-nonce', () => {
    expect(classify('DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"').kind).toBe('dpop-nonce')
  })
  it('V04: invalid_token with algs', () => {
    const c = classify('DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256"')
    expect([c.kind, c.algs, c.errorDescription]).toEqual(['invalid-token', ['ES256'], 'Invalid DPoP key binding'])
  })
  it('V11/V12/V33 STEP-02: step-up with acr_values and max_age in both forms', () => {
    expect(classify('Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR"')).toMatchObject({ kind: 'step-up', acrValues: ['myACR'] })
    expect(classify('Bearer error="insufficient_user_authentication", max_age="5"')).toMatchObject({ kind: 'step-up', maxAge: 5 })
    expect(classify('Bearer error="insufficient_user_authentication", max_age=5, acr_values="urn:mace:incommon:iap:silver urn:example:mfa"')).toMatchObject({ maxAge: 5, acrValues: ['urn:mace:incommon:iap:silver', 'urn:example:mfa'] })
  })
  it.each(['"-1"', '"5s"', '""'])('STEP-02: max_age=%s is malformed', (v) => {
    const c = classify(`Bearer error="insufficient_user_authentication", max_age=${v}`)
    expect(c.maxAge).toBeUndefined()
    expect(c.malformed).toMatch(/max_age/)
  })
  it('V16 T-12: claims decoded from base64', () => {
    const c = classify('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiY3AxIn19fQ=="')
    expect(c.kind).toBe('insufficient-claims')
    expect(c.claims).toEqual({ access_token: { acrs: { essential: true, value: 'cp1' } } })
  })
  it('insufficient_claims with garbage claims is malformed, not thrown', () => {
    expect(classify('Bearer error="insufficient_claims", claims="%%%"')).toMatchObject({ kind: 'insufficient-claims', malformed: expect.any(String) })
  })
  it('V15: insufficient_scope with scope list and resource_metadata', () => {
    expect(classify('Bearer error="insufficient_scope", scope="files:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"')).toMatchObject({ kind: 'insufficient-scope', scope: ['files:write'], resourceMetadata: 'https://mcp.example.com/.well-known/oauth-protected-resource' })
  })
  it('V14 PRM-01: resource_metadata without error', () => {
    expect(classify('Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read"').kind).toBe('resource-metadata')
  })
  it('CHAL-14: error_description is sanitised', () => {
    expect(classify('Bearer error="invalid_token", error_description="a\\"b\u0007c"').errorDescription).toBe('abc')
  })
})

describe('decodeClaimsParameter under fuzzing (a sample; npm run fuzz runs 100,000)', () => {
  it('never throws, and returns only objects', async () => {
    const { decodeClaimsParameter } = await import('../src/index.js')
    fc.assert(fc.property(fc.oneof(fc.base64String({ maxLength: 300 }), fc.string({ maxLength: 200 }), fc.json().map((j) => Buffer.from(j).toString('base64url'))), (c) => {
      const out = decodeClaimsParameter(c)
      expect(out === undefined || (typeof out === 'object' && out !== null && !Array.isArray(out))).toBe(true)
    }), { numRuns: 2000 })
  })
})
