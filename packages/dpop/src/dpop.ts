import { BoundError, systemClock, type Clock } from '@bound/core'
import { clockRule, createLru, durationMs, optionsChecker, z } from '@bound/core/internal'
import type { DpopKey } from './keys.js'
import { createNonceStore, type NonceObservation, type NonceStore } from './nonce-store.js'
import { accessTokenHash, createProofBuilder, type ProofBuilder } from './proof.js'
import { normalizeHtu } from './htu.js'

/**
 * Options of {@link createDpop}.
 *
 * @example
 * ```ts
 * const dpop = createDpop({ key: await generateDpopKey(), maxNonceOrigins: 100, maxClockSkewMs: 60_000 })
 * ```
 */
export interface DpopOptions {
  /** The key proofs are signed with. */
  key: DpopKey
  /** Origins whose nonces are kept at most. Default 1,000. */
  maxNonceOrigins?: number
  /** The clock `iat` is read from. Default the system clock. */
  clock?: Clock
  /** Largest clock correction learned from a server, in milliseconds. Default 300,000 (5 minutes). */
  maxClockSkewMs?: number
}

/**
 * Options of {@link Dpop.proof}.
 *
 * @example
 * ```ts
 * const proof = await dpop.proof('GET', 'https://api.example.com/orders', { accessToken: token.value })
 * ```
 */
export interface ProofOptions {
  /** The access token presented with this request; adds `ath`. */
  accessToken?: string | undefined
  /**
   * The nonce to put in this proof instead of the origin's stored one — the one a challenge just
   * gave, which a late response from before a rotation may already have overwritten in the store.
   */
  nonce?: string | undefined
}

/**
 * A session's DPoP state: the current key, a proof builder for it, the nonce store, and clock
 * corrections per origin. One per session; never shared.
 *
 * @example
 * ```ts
 * const dpop: Dpop = session.dpop!
 * const headers = { authorization: `DPoP ${token.value}`, dpop: await dpop.proof('GET', url, { accessToken: token.value }) }
 * const res = await fetch(url, { headers })
 * dpop.observe(url, res.headers) // keep the server's next nonce
 * ```
 */
export interface Dpop {
  /** The current key. */
  readonly key: DpopKey
  /** Thumbprint of the current key (`cnf.jkt`). */
  readonly jkt: string
  /** Nonces per origin. */
  readonly nonces: NonceStore
  /** A fresh proof for `method` `url`, with the origin's nonce and, with a token, `ath`. */
  proof(method: string, url: string | URL, options?: ProofOptions): string | Promise<string>
  /** Harvests `DPoP-Nonce` from a response of `url`'s origin. */
  observe(url: string | URL, headers: { get(name: string): string | null }): NonceObservation
  /** Moves to a new key. Nonces stay (they belong to servers, not keys). */
  rotate(key: DpopKey): void
  /**
   * Checks the current key's alg against a server's list (`dpop_signing_alg_values_supported` or a
   * challenge's `algs`); throws `ERR_DPOP_ALG_UNSUPPORTED` naming both when it is not accepted.
   */
  assertAlgAccepted(accepted: readonly string[] | undefined, by: string): void
  /**
   * Learns the clock offset to `url`'s origin from the server's time (e.g. its `Date` header)
   * after it rejected a proof as out of window. Bounded and at most once per origin per minute.
   * Returns whether the offset changed.
   */
  learnClockSkew(url: string | URL, serverTimeMs: number): boolean
}

/**
 * Creates a session's {@link Dpop} state.
 *
 * @example
 * ```ts
 * const dpop = createDpop({ key: await generateDpopKey() })
 * const proof = await dpop.proof('GET', 'https://api.example.com/orders', { accessToken })
 * ```
 */
const checkDpopOptions = optionsChecker('createDpop', {
  key: z.custom((v) => typeof v === 'object' && v !== null && typeof (v as DpopKey).sign === 'function', 'must be a key from generateDpopKey() or importDpopKey()'),
  maxNonceOrigins: z.number().int().positive().optional(),
  clock: clockRule.optional(),
  maxClockSkewMs: durationMs(0, 3_600_000).optional(),
})

export function createDpop(options: DpopOptions): Dpop {
  checkDpopOptions(options)
  const clock = options.clock ?? systemClock
  const maxSkewMs = options.maxClockSkewMs ?? 300_000
  const nonces = createNonceStore({ max: options.maxNonceOrigins ?? 1000 })
  const skews = createLru<string, { offsetMs: number; learnedAt: number }>(options.maxNonceOrigins ?? 1000)
  let builder: ProofBuilder = createProofBuilder(options.key)
  let lastUrl: string | undefined
  let lastOrigin = ''
  let lastHtu = ''
  let lastToken: string | undefined
  let lastAth: string | undefined

  const dpop: Dpop = {
    get key() {
      return builder.key
    },
    get jkt() {
      return builder.key.jkt
    },
    nonces,
    proof(method, url, proofOptions) {
      let origin: string
      let htu: string
      if (typeof url === 'string' && url === lastUrl) {
        origin = lastOrigin
        htu = lastHtu
      } else {
        const u = typeof url === 'string' ? new URL(url) : url
        origin = u.origin
        htu = normalizeHtu(u)
        if (typeof url === 'string') {
          lastUrl = url
          lastOrigin = origin
          lastHtu = htu
        }
      }
      let ath: string | undefined
      const token = proofOptions?.accessToken
      if (token !== undefined) {
        if (token !== lastToken) {
          lastAth = accessTokenHash(token)
          lastToken = token
        }
        ath = lastAth
      }
      const skew = skews.size === 0 ? undefined : skews.get(origin)
      const now = clock.now() + (skew?.offsetMs ?? 0)
      return builder.build({ htm: normalizeMethod(method), htu, iat: Math.floor(now / 1000), ath, nonce: proofOptions?.nonce ?? nonces.get(origin) })
    },
    observe(url, headers) {
      // (most responses carry no nonce: look before parsing the URL)
      if (headers.get('dpop-nonce') === null) return 'none'
      return nonces.observe(typeof url === 'string' ? (url === lastUrl ? lastOrigin : new URL(url).origin) : url.origin, headers)
    },
    rotate(key) {
      builder = createProofBuilder(key)
    },
    assertAlgAccepted(accepted, by) {
      if (accepted === undefined || accepted.length === 0) return
      if (!accepted.includes(builder.key.alg)) {
        throw new BoundError(
          'ERR_DPOP_ALG_UNSUPPORTED',
          `${by} accepts DPoP algs [${accepted.slice(0, 20).join(', ')}] but the session's key signs ${builder.key.alg}; use a key with one of those algs (generateDpopKey({ alg }))`,
        )
      }
    },
    learnClockSkew(url, serverTimeMs) {
      if (!Number.isFinite(serverTimeMs)) return false
      const origin = typeof url === 'string' ? new URL(url).origin : url.origin
      const now = clock.now()
      const previous = skews.get(origin)
      if (previous && now - previous.learnedAt < 60_000) return false
      const offsetMs = Math.max(-maxSkewMs, Math.min(maxSkewMs, serverTimeMs - now))
      skews.set(origin, { offsetMs, learnedAt: now })
      return previous?.offsetMs !== offsetMs
    },
  }
  return dpop
}

const FETCH_NORMALISED = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])

/** `htm` is the method as sent: fetch upper-cases only its six standard methods (DPOP-04). */
function normalizeMethod(method: string): string {
  if (method === 'GET' || method === 'POST') return method
  const upper = method.toUpperCase()
  return FETCH_NORMALISED.has(upper) ? upper : method
}
