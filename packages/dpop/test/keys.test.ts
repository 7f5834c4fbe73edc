import { KeyObject, createPublicKey, generateKeyPairSync, verify, webcrypto } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { BoundError } from '@bound/core'
import { DPOP_ALGS, createProofBuilder, fromSigner, generateDpopKey, importDpopKey, isPublicOnlyJwk, jwkThumbprint } from '../src/index.js'

const RFC7638_RSA_N = '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw'

describe('jwkThumbprint (RFC 7638, T-2)', () => {
  it("matches RFC 7638 §3.1's own example", () => {
    expect(jwkThumbprint({ kty: 'RSA', e: 'AQAB', n: RFC7638_RSA_N, alg: 'RS256', kid: '2011-04-29' })).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs')
  })
  it('matches the RFC 9449 EC key and the RFC 8037 Ed25519 key', () => {
    expect(jwkThumbprint({ kty: 'EC', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA', crv: 'P-256' })).toBe('0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I')
    expect(jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' })).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k')
  })
})

describe('generateDpopKey', () => {
  it.each(DPOP_ALGS)('%s: public-only JWK, jkt, and a signature that verifies', async (alg) => {
    const key = await generateDpopKey({ alg })
    expect(key.alg).toBe(alg)
    expect(isPublicOnlyJwk(key.publicJwk)).toBe(true)
    expect(Object.keys(key.publicJwk).sort()).toEqual(alg === 'EdDSA' ? ['crv', 'kty', 'x'] : alg.startsWith('ES') ? ['crv', 'kty', 'x', 'y'] : ['e', 'kty', 'n'])
    expect(key.jkt).toBe(jwkThumbprint(key.publicJwk))
    const data = Buffer.from('hello')
    const sig = key.sign(data) as Uint8Array
    const pub = createPublicKey({ key: key.publicJwk, format: 'jwk' })
    const ok = alg === 'EdDSA' ? verify(null, data, pub, sig)
      : alg === 'PS256' ? verify('sha256', data, { key: pub, padding: 6, saltLength: 32 }, sig)
        : verify(alg === 'ES384' ? 'sha384' : 'sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig)
    expect(ok).toBe(true)
  })
  it('DPOP-28: exposes no private key material anywhere on the key object', async () => {
    const key = await generateDpopKey()
    const seen = JSON.stringify(key) + Object.values(key).map(String).join()
    for (const m of ['"d"', 'PRIVATE KEY']) expect(seen).not.toContain(m)
    for (const v of Object.values(key)) expect(v instanceof KeyObject || v instanceof (globalThis as unknown as { CryptoKey: typeof KeyObject }).CryptoKey).toBe(false)
  })
  it('refuses unknown algs and weak RSA', async () => {
    await expect(generateDpopKey({ alg: 'HS256' as never })).rejects.toMatchObject({ code: 'ERR_DPOP_ALG_UNSUPPORTED' })
    await expect(generateDpopKey({ alg: 'RS256', modulusLength: 1024 })).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID' })
  })
})

describe('importDpopKey', () => {
  it('imports JWK, PEM, KeyObject and CryptoKeyPair, all to the same jkt', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = privateKey.export({ format: 'jwk' })
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
    const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])
    const a = await importDpopKey(jwk)
    const b = await importDpopKey(pem)
    const c = await importDpopKey(privateKey, { alg: 'ES256' })
    const d = await importDpopKey(pair as webcrypto.CryptoKeyPair)
    expect(new Set([a.jkt, b.jkt, c.jkt])).toEqual(new Set([a.jkt]))
    expect(a.alg).toBe('ES256')
    expect(d.alg).toBe('ES256')
  })
  it('infers the alg from the key type', async () => {
    expect((await importDpopKey(generateKeyPairSync('ed25519').privateKey)).alg).toBe('EdDSA')
    expect((await importDpopKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey)).alg).toBe('ES384')
    expect((await importDpopKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, { alg: 'PS256' })).alg).toBe('PS256')
  })
  it('refuses weak, mismatched and public-only keys with ERR_DPOP_KEY_INVALID', async () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey
    await expect(importDpopKey(weak)).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID', message: expect.stringContaining('2048') })
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await expect(importDpopKey(ec.privateKey, { alg: 'EdDSA' })).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID' })
    await expect(importDpopKey({ ...ec.privateKey.export({ format: 'jwk' }), alg: 'ES384' })).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID' })
    await expect(importDpopKey(ec.publicKey as never)).rejects.toBeInstanceOf(BoundError)
    await expect(importDpopKey(ec.publicKey.export({ format: 'jwk' }))).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID' })
    await expect(importDpopKey('not a pem')).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID' })
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await expect(importDpopKey({ privateKey: (await webcrypto.subtle.importKey('pkcs8', ec.privateKey.export({ format: 'der', type: 'pkcs8' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])), publicKey: await webcrypto.subtle.importKey('jwk', other.publicKey.export({ format: 'jwk' }), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']) } as never)).rejects.toMatchObject({ code: 'ERR_DPOP_KEY_INVALID', message: expect.stringContaining('does not match') })
  })
})

describe('pluggable signer', () => {
  it('a signer backed by a separate KeyObject (a stand-in for a KMS) makes verifiable proofs, sync or async', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const { sign } = await import('node:crypto')
    let calls = 0
    const kms = fromSigner({
      alg: 'ES256',
      publicJwk: publicKey.export({ format: 'jwk' }) as never,
      sign: async (bytes) => { calls++; return sign('sha256', bytes, { key: privateKey, dsaEncoding: 'ieee-p1363' }) },
    })
    const proof = await createProofBuilder(kms).build({ htm: 'GET', htu: 'https://a.example/x', iat: 1 })
    const [h, p, s] = proof.split('.')
    expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'))).toBe(true)
    expect(calls).toBe(1)
    expect(() => fromSigner({ alg: 'ES256', publicJwk: privateKey.export({ format: 'jwk' }) as never, sign: () => new Uint8Array() })).toThrow(/private members/)
    expect(() => fromSigner({ alg: 'EdDSA', publicJwk: publicKey.export({ format: 'jwk' }) as never, sign: () => new Uint8Array() })).toThrow(/OKP/)
  })
})

describe('loadOrCreateDpopKey (persistence hook)', () => {
  it('generates and saves once, then a restarted workload loads the same binding', async () => {
    const { loadOrCreateDpopKey } = await import('../src/index.js')
    let stored: Record<string, unknown> | undefined
    let saves = 0
    const persistence = { load: () => stored as never, save: (jwk: Record<string, unknown>) => { saves++; stored = jwk } }
    const first = await loadOrCreateDpopKey(persistence, { alg: 'EdDSA' })
    expect(saves).toBe(1)
    expect(stored).toMatchObject({ kty: 'OKP', alg: 'EdDSA', d: expect.any(String) })
    const second = await loadOrCreateDpopKey(persistence)
    expect(saves).toBe(1)
    expect(second.jkt).toBe(first.jkt)
    expect(second.alg).toBe('EdDSA')
  })
})
