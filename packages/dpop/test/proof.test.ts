import { createPublicKey, verify } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { accessTokenHash, createDpop, createNonceStore, createProofBuilder, generateDpopKey, importDpopKey, isPublicOnlyJwk, normalizeHtu } from '../src/index.js'

const decode = (jws: string) => {
  const [h, p] = jws.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) }
}
const verifies = (jws: string, jwk: object) => {
  const [h, p, s] = jws.split('.')
  const key = createPublicKey({ key: jwk as never, format: 'jwk' })
  return verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'))
}

// RFC 9421 test-key-ed25519 (T-3)
const ED_JWK = { kty: 'OKP', crv: 'Ed25519', d: 'n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU', x: 'JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs' }

describe('proofs', () => {
  it('T-3: byte-identical EdDSA proofs for fixed claims (header and payload serialisation)', async () => {
    const builder = createProofBuilder(await importDpopKey(ED_JWK))
    expect(builder.build({ jti: 'e1j3V_bKic8-LAEB', htm: 'GET', htu: 'https://resource.example.org/protectedresource', iat: 1562262618, ath: 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo' })).toBe(
      'eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVkRFNBIiwiandrIjp7Imt0eSI6Ik9LUCIsImNydiI6IkVkMjU1MTkiLCJ4IjoiSnJRTGo1UF84OWlYRVM5LXZGZ3JJeTI5Y2xGOUNDX29QUHN3M2M1RDBicyJ9fQ.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.cYNreBCocaSoNZLuMQe1AYBfrYGrBOCEb1Tziw0NfLswFMGTPpqgxok58prgLoz03xagsFVfFCv9LchOdQeZAg',
    )
    expect(builder.build({ jti: '-BwC3ESc6acc2lTc', htm: 'POST', htu: 'https://server.example.com/token', iat: 1562262616, nonce: 'eyJ7S_zG.eyJH0-Z.HX4w-7v' })).toBe(
      'eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVkRFNBIiwiandrIjp7Imt0eSI6Ik9LUCIsImNydiI6IkVkMjU1MTkiLCJ4IjoiSnJRTGo1UF84OWlYRVM5LXZGZ3JJeTI5Y2xGOUNDX29QUHN3M2M1RDBicyJ9fQ.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2LCJub25jZSI6ImV5SjdTX3pHLmV5SkgwLVouSFg0dy03diJ9.TXM7fm2U2_DDHBWiMCEKKbylzxvMiG5YfOx9L0CBJnuL2EOJzDlyh_dhv8bE4If7vyoAgJZkrSjR5EWs3gghCg',
    )
  })

  it('T-1 DPOP-08: ath of the RFC 9449 example token', () => {
    expect(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU')).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo')
  })

  it('DPOP-01/02/03/04/07/09: header, public-only jwk, unique 128-bit jti, htm, integer iat, nonce', async () => {
    let now = 1_700_000_000_123
    const dpop = createDpop({ key: await generateDpopKey(), clock: { now: () => now } })
    dpop.nonces.set('https://api.example.com', 'n-1')
    const jtis = new Set<string>()
    for (let i = 0; i < 10_000; i++) {
      const { payload } = decode(dpop.proof('post', 'https://api.example.com/x?q=1') as string)
      jtis.add(payload.jti)
    }
    expect(jtis.size).toBe(10_000)
    const proof = dpop.proof('delete', 'https://API.example.com:443/a?b#c', { accessToken: 'tok~+/=' }) as string
    const { header, payload } = decode(proof)
    expect(header).toEqual({ typ: 'dpop+jwt', alg: 'ES256', jwk: dpop.key.publicJwk })
    expect(isPublicOnlyJwk(header.jwk)).toBe(true)
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{22}$/) // 132 bits
    expect(payload).toMatchObject({ htm: 'DELETE', htu: 'https://api.example.com/a', iat: 1_700_000_000, ath: accessTokenHash('tok~+/='), nonce: 'n-1' })
    expect(verifies(proof, header.jwk)).toBe(true)
    now += 5000
    expect(decode(dpop.proof('GET', 'https://other.example/') as string).payload.nonce).toBeUndefined()
  })

  it('DPOP-19: nonces are kept per origin and never cross', async () => {
    const dpop = createDpop({ key: await generateDpopKey() })
    dpop.observe('https://as.example/token', new Headers({ 'DPoP-Nonce': 'nA' }))
    dpop.observe('https://rs1.example/x', new Headers({ 'DPoP-Nonce': 'nB' }))
    const nonceOf = (u: string) => decode(dpop.proof('GET', u) as string).payload.nonce
    expect([nonceOf('https://as.example/token'), nonceOf('https://rs1.example/y'), nonceOf('https://rs2.example/y')]).toEqual(['nA', 'nB', undefined])
  })

  it('DPOP-18/20: nonce store harvests any response, refuses invalid or duplicated nonces, stays bounded', () => {
    const store = createNonceStore({ max: 100 })
    expect(store.observe('https://a', new Headers())).toBe('none')
    expect(store.observe('https://a', new Headers({ 'DPoP-Nonce': 'eyJ7S_zG.eyJbYu3.xQmBj-1' }))).toBe('stored')
    expect(store.observe('https://a', new Headers({ 'DPoP-Nonce': 'eyJ7S_zG.eyJbYu3.xQmBj-1' }))).toBe('unchanged')
    const two = new Headers()
    two.append('DPoP-Nonce', 'a')
    two.append('DPoP-Nonce', 'b')
    expect(store.observe('https://a', two)).toBe('invalid')
    expect(store.set('https://a', 'has space')).toBe('invalid')
    expect(store.set('https://a', 'quote"')).toBe('invalid')
    expect(store.get('https://a')).toBe('eyJ7S_zG.eyJbYu3.xQmBj-1')
    for (let i = 0; i < 10_000; i++) store.set(`https://h${i}.example`, `n${i}`)
    expect(store.size).toBe(100)
  })

  it('DPOP-04: htm upper-cases only the methods fetch normalises; others stay as sent', async () => {
    const dpop = createDpop({ key: await generateDpopKey() })
    const htm = (m: string) => decode(dpop.proof(m, 'https://a.example/') as string).payload.htm
    expect(['get', 'post', 'put', 'delete', 'head', 'options', 'patch', 'purge', 'PATCH'].map(htm)).toEqual(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'patch', 'purge', 'PATCH'])
  })

  it('rotate: proofs switch to the new key', async () => {
    const dpop = createDpop({ key: await generateDpopKey() })
    const before = dpop.jkt
    const next = await generateDpopKey({ alg: 'EdDSA' })
    dpop.rotate(next)
    expect(dpop.jkt).toBe(next.jkt)
    expect(dpop.jkt).not.toBe(before)
    expect(decode(dpop.proof('GET', 'https://a.example/') as string).header.alg).toBe('EdDSA')
  })

  it('DPOP-24/25: assertAlgAccepted names both lists', async () => {
    const dpop = createDpop({ key: await generateDpopKey() })
    expect(() => dpop.assertAlgAccepted(['ES256', 'PS256'], 'the AS')).not.toThrow()
    expect(() => dpop.assertAlgAccepted(['PS256'], 'https://api.example.com')).toThrow(expect.objectContaining({ code: 'ERR_DPOP_ALG_UNSUPPORTED', message: expect.stringMatching(/PS256.*ES256/) }))
  })

  it('DPOP-32: clock skew learned once per origin per minute, bounded', async () => {
    let now = 1_000_000_000_000
    const dpop = createDpop({ key: await generateDpopKey(), clock: { now: () => now }, maxClockSkewMs: 300_000 })
    expect(dpop.learnClockSkew('https://rs.example/x', now + 120_000)).toBe(true)
    expect(decode(dpop.proof('GET', 'https://rs.example/y') as string).payload.iat).toBe(Math.floor((now + 120_000) / 1000))
    expect(decode(dpop.proof('GET', 'https://other.example/y') as string).payload.iat).toBe(Math.floor(now / 1000))
    expect(dpop.learnClockSkew('https://rs.example/x', now + 10_000)).toBe(false)
    now += 61_000
    expect(dpop.learnClockSkew('https://rs.example/x', now + 3_600_000)).toBe(true)
    expect(decode(dpop.proof('GET', 'https://rs.example/y') as string).payload.iat).toBe(Math.floor((now + 300_000) / 1000))
  })

  it('ES256 proofs verify with the embedded jwk', async () => {
    const key = await generateDpopKey()
    const proof = createProofBuilder(key).build({ htm: 'GET', htu: 'https://a.example/', iat: 1 }) as string
    expect(verifies(proof, key.publicJwk)).toBe(true)
  })
})

describe('normalizeHtu (DPOP-05/06, T-4)', () => {
  it.each([
    ['H1', 'https://server.example.com/token', 'https://server.example.com/token'],
    ['H2', 'https://Server.Example.COM:443/token?x=1#frag', 'https://server.example.com/token'],
    ['H3', 'https://server.example.com', 'https://server.example.com/'],
    ['H4', 'https://server.example.com/path?', 'https://server.example.com/path'],
    ['H5', 'http://server.example.com:80/a/./b/../c', 'http://server.example.com/a/c'],
    ['H6', 'https://server.example.com:8443/p%7e/q%7E?z', 'https://server.example.com:8443/p%7e/q%7E'],
    ['H7', 'https://user:pw@server.example.com/x', 'https://server.example.com/x'],
    ['H8', 'https://bücher.example/x', 'https://xn--bcher-kva.example/x'],
    ['H9', 'https://server.example.com/a%2Fb;p=1', 'https://server.example.com/a%2Fb;p=1'],
    ['trailing slash kept', 'https://a.example/x/', 'https://a.example/x/'],
  ])('%s', (_id, url, htu) => {
    expect(normalizeHtu(url)).toBe(htu)
  })

  it('matches what the request line carries, for random URLs', () => {
    fc.assert(fc.property(fc.webUrl({ withQueryParameters: true, withFragments: true }), (url) => {
      const u = new URL(url)
      const htu = normalizeHtu(url)
      // the server rebuilds scheme://host[:port] + the request-target path it received
      expect(htu).toBe(`${u.protocol}//${u.host}${u.pathname}`)
      expect(htu).not.toMatch(/[?#]/)
      expect(htu).toBe(htu.replace(/^[a-z]+:\/\/[^/]+/i, (m) => m.toLowerCase()))
      expect(normalizeHtu(htu)).toBe(htu)
    }), { numRuns: 2000 })
  })

  it('refuses non-http(s) and relative URLs with a typed error', () => {
    expect(() => normalizeHtu('/relative')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_INPUT' }))
    expect(() => normalizeHtu('ftp://a.example/')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_INPUT' }))
  })
})
