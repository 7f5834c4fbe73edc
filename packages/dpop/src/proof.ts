import { createHash, randomFillSync } from 'node:crypto'
import type { DpopKey } from './keys.js'

/**
 * What a proof is about.
 *
 * @example
 * ```ts
 * const input: ProofInput = { htm: 'GET', htu: normalizeHtu(url), iat: Math.floor(Date.now() / 1000), ath: accessTokenHash(token) }
 * const proof = await createProofBuilder(key).build(input)
 * ```
 */
export interface ProofInput {
  /** HTTP method of this request, as sent. */
  htm: string
  /** The `htu`, already normalised (see {@link normalizeHtu}). */
  htu: string
  /** Seconds since the epoch; integer. */
  iat: number
  /** The `ath` (base64url SHA-256 of the access token) when a token is presented. */
  ath?: string | undefined
  /** The server's nonce, when it supplied one. */
  nonce?: string | undefined
  /** Overrides the random `jti` (tests and vectors only). */
  jti?: string
}

/**
 * Builds compact DPoP proofs for one key, caching everything that does not change per proof.
 *
 * @example
 * ```ts
 * const builder: ProofBuilder = createProofBuilder(await generateDpopKey())
 * const proof = await builder.build({ htm: 'POST', htu: 'https://as.example.com/token', iat: Math.floor(Date.now() / 1000) })
 * ```
 */
export interface ProofBuilder {
  /** The key proofs are signed with. */
  readonly key: DpopKey
  /** A fresh proof. Synchronous signers give a string; asynchronous ones a promise. */
  build(input: ProofInput): string | Promise<string>
}

/**
 * base64url(SHA-256(token)): the `ath` claim (RFC 9449 §4.2).
 *
 * @example
 * ```ts
 * accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU') // 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo'
 * ```
 */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken).digest('base64url')
}

const JTI_CHARS = 22 // 22 × 6 = 132 random bits (DPOP-03 asks for ≥ 96, issue 3 for ≥ 128)

/**
 * Creates a {@link ProofBuilder} for `key`. The protected header (`typ`, `alg`, `jwk`) is encoded
 * once; each proof adds a 132-bit CSPRNG `jti` and signs synchronously when the key allows.
 *
 * @example
 * ```ts
 * const builder = createProofBuilder(await generateDpopKey())
 * const proof = builder.build({ htm: 'GET', htu: 'https://api.example.com/orders', iat: Math.floor(Date.now() / 1000) })
 * ```
 */
export function createProofBuilder(key: DpopKey): ProofBuilder {
  const prefix = `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })).toString('base64url')}.`
  // jti: 22 base64url characters (132 bits) cut from one CSPRNG draw, refilled every 186 proofs.
  const pool = Buffer.allocUnsafe(3 * 1364)
  let chars = ''
  let offset = 0
  const nextJti = () => {
    if (offset + JTI_CHARS > chars.length) {
      randomFillSync(pool)
      chars = pool.toString('base64url')
      offset = 0
    }
    const jti = chars.slice(offset, offset + JTI_CHARS)
    offset += JTI_CHARS
    return jti
  }
  // JSON-encoded strings that repeat from proof to proof (the same URL, the same nonce).
  const json = (cache: { raw?: string; encoded?: string }, value: string) => {
    if (cache.raw !== value) {
      cache.raw = value
      cache.encoded = JSON.stringify(value)
    }
    return cache.encoded as string
  }
  const htuCache = {}
  const htmCache = {}
  const nonceCache = {}
  return {
    key,
    build(input) {
      let payload = `{"jti":${input.jti === undefined ? `"${nextJti()}"` : JSON.stringify(input.jti)},"htm":${json(htmCache, input.htm)},"htu":${json(htuCache, input.htu)},"iat":${Math.floor(input.iat)}`
      if (input.ath !== undefined) payload += `,"ath":"${input.ath}"`
      if (input.nonce !== undefined) payload += `,"nonce":${json(nonceCache, input.nonce)}`
      payload += '}'
      const signingInput = prefix + Buffer.from(payload).toString('base64url')
      const signature = key.sign(Buffer.from(signingInput, 'latin1'))
      if (signature instanceof Promise) {
        return signature.then((sig) => `${signingInput}.${Buffer.from(sig).toString('base64url')}`)
      }
      return `${signingInput}.${Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString('base64url')}`
    },
  }
}
