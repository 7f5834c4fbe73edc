import { createHash, randomFillSync } from 'node:crypto'
import type { DpopKey } from './keys.js'

/** What a proof is about. */
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

/** Builds compact DPoP proofs for one key, caching everything that does not change per proof. */
export interface ProofBuilder {
  readonly key: DpopKey
  /** A fresh proof. Synchronous signers give a string; asynchronous ones a promise. */
  build(input: ProofInput): string | Promise<string>
}

/** base64url(SHA-256(token)): the `ath` claim (RFC 9449 §4.2). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken).digest('base64url')
}

const JTI_BYTES = 16 // 128 bits

/**
 * Creates a {@link ProofBuilder} for `key`. The protected header (`typ`, `alg`, `jwk`) is encoded
 * once; each proof adds a 128-bit CSPRNG `jti` and signs synchronously when the key allows.
 *
 * @example
 * ```ts
 * const builder = createProofBuilder(await generateDpopKey())
 * const proof = builder.build({ htm: 'GET', htu: 'https://api.example.com/orders', iat: Math.floor(Date.now() / 1000) })
 * ```
 */
export function createProofBuilder(key: DpopKey): ProofBuilder {
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })).toString('base64url')
  const prefix = `${header}.`
  // A pool of random bytes, refilled in bulk: one CSPRNG call per 256 proofs.
  const pool = Buffer.allocUnsafe(JTI_BYTES * 256)
  let offset = pool.length
  const nextJti = () => {
    if (offset >= pool.length) {
      randomFillSync(pool)
      offset = 0
    }
    const jti = pool.toString('base64url', offset, offset + JTI_BYTES)
    offset += JTI_BYTES
    return jti
  }
  return {
    key,
    build(input) {
      let payload = `{"jti":${input.jti === undefined ? `"${nextJti()}"` : JSON.stringify(input.jti)},"htm":${JSON.stringify(input.htm)},"htu":${JSON.stringify(input.htu)},"iat":${Math.floor(input.iat)}`
      if (input.ath !== undefined) payload += `,"ath":"${input.ath}"`
      if (input.nonce !== undefined) payload += `,"nonce":${JSON.stringify(input.nonce)}`
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
