import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { CompactSign, EmbeddedJWK, calculateJwkThumbprint, importJWK, jwtVerify, type JWK } from 'jose'
import { DPOP_ALGS, accessTokenHash, createProofBuilder, importDpopKey, type DpopAlg } from '../src/index.js'

// Issue 15: the hand-written proof signer (about 3× jose's speed: the hot path) held to jose —
// every alg's proof verified by jose, its jkt recomputed by jose, and the JWS bytes compared with
// jose's own signature over the same header and payload (byte-identical where the alg is
// deterministic: EdDSA and RS256).
function keyPair(alg: DpopAlg): KeyObject {
  switch (alg) {
    case 'ES256': return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    case 'ES384': return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
    case 'EdDSA': return generateKeyPairSync('ed25519').privateKey
    default: return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  }
}

describe.each(DPOP_ALGS)('DPoP proofs with %s, held to jose (DPOP-01…DPOP-05)', (alg) => {
  it('jose verifies the proof against its embedded key, and agrees on every claim and the thumbprint', async () => {
    const privateKey = keyPair(alg)
    const key = await importDpopKey(privateKey, { alg })
    const token = 'an-access-token.with.dots'
    const proof = await createProofBuilder(key).build({ htm: 'POST', htu: 'https://api.example.com/orders', iat: 1_760_000_000, ath: accessTokenHash(token), nonce: 'n-1' })
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [alg], currentDate: new Date(1_760_000_000_000) })
    expect(protectedHeader.alg).toBe(alg)
    expect(protectedHeader.jwk).not.toHaveProperty('d')
    expect(await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256')).toBe(key.jkt)
    expect(payload).toMatchObject({ htm: 'POST', htu: 'https://api.example.com/orders', iat: 1_760_000_000, nonce: 'n-1', ath: createHash('sha256').update(token).digest('base64url') })
    expect(typeof payload.jti === 'string' && payload.jti.length >= 16).toBe(true)
  })

  it('the JWS matches jose’s signature over the same header and payload', async () => {
    const privateKey = keyPair(alg)
    const key = await importDpopKey(privateKey, { alg })
    const proof = await createProofBuilder(key).build({ htm: 'GET', htu: 'https://api.example.com/x', iat: 1_760_000_000, jti: 'fixed-jti-for-the-comparison' })
    const [header, payload, signature] = proof.split('.') as [string, string, string]
    const joseKey = await importJWK(privateKey.export({ format: 'jwk' }) as JWK, alg)
    const theirs = await new CompactSign(Buffer.from(payload, 'base64url')).setProtectedHeader(JSON.parse(Buffer.from(header, 'base64url').toString())).sign(joseKey)
    const [theirHeader, theirPayload, theirSignature] = theirs.split('.') as [string, string, string]
    expect([theirHeader, theirPayload]).toEqual([header, payload]) // the same signing input, byte for byte
    if (alg === 'EdDSA' || alg === 'RS256') expect(theirSignature).toBe(signature) // deterministic algs: the same bytes
    else await expect(jwtVerify(theirs, EmbeddedJWK, { algorithms: [alg] })).resolves.toBeDefined() // randomised: each verifies
  })
})
