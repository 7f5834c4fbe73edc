import { randomBytes } from 'node:crypto'
import { decodeJwt, type JWTPayload } from 'jose'
import type { DecodedProof } from './dpop-proof-check.js'

/**
 * How a request's access token was bound.
 *
 * @example
 * ```ts
 * expect(kit.rs.seen().every((r) => r.binding === ('dpop' satisfies Binding))).toBe(true)
 * ```
 */
export type Binding = 'dpop' | 'mtls' | 'bearer'

/**
 * An RFC 9470 step-up requirement.
 *
 * @example
 * ```ts
 * kit.rs.requireStepUp('/admin', { acr_values: 'urn:example:mfa', max_age: 300 } satisfies StepUpRequirement)
 * ```
 */
export interface StepUpRequirement {
  /** Space-separated acceptable `acr` values. */
  acr_values: string
  /** Maximum age of `auth_time`, seconds. */
  max_age?: number
}

/**
 * An OIDC-syntax claims request, e.g. `{ access_token: { acrs: { essential: true, value: 'cp1' } } }`.
 * Members under `access_token` (or top-level members when there is no `access_token`) are
 * required in the token: with `value` they must equal it, with `values` be one of them, otherwise
 * just be present.
 *
 * @example
 * ```ts
 * kit.rs.requireClaims('/payments', { access_token: { acrs: { essential: true, value: 'cp1' } } } satisfies ClaimsRequest)
 * ```
 */
export type ClaimsRequest = Record<string, unknown>

/**
 * Request statistics of the resource server.
 *
 * @example
 * ```ts
 * const { verified, nonceChallenges, byBinding }: ResourceServerCounters = kit.rs.counters()
 * ```
 */
export interface ResourceServerCounters {
  /** Requests to protected paths. */
  requests: number
  /** Requests that passed every check. */
  verified: number
  /** Requests answered with an error. */
  rejected: number
  /** Rejections with `invalid_dpop_proof` (replays included). */
  rejectedProofs: number
  /** Proofs whose `jti` had been seen before. */
  replayedJti: number
  /** `use_dpop_nonce` challenges. */
  nonceChallenges: number
  /** Rejections with `invalid_token` (revoked, expired, bad signature, binding mismatch, ...). */
  invalidToken: number
  /** `insufficient_user_authentication` challenges. */
  stepUpChallenges: number
  /** `insufficient_scope` challenges. */
  scopeChallenges: number
  /** `insufficient_claims` challenges. */
  claimsChallenges: number
  /** Requests on which oauth4webapi and the jose verifier disagreed. Should stay 0. */
  verifierDisagreements: number
  /** Verified requests by binding. */
  byBinding: { dpop: number; mtls: number; bearer: number }
  /** Decoded header and claims of the last verified DPoP proof. */
  lastProof?: DecodedProof
  /** Distinct access token `jti`s seen on protected requests. */
  tokensSeen: number
  /** TCP connections accepted (each a TLS handshake), whatever they carried. */
  connections: number
  /** Connections open now. */
  openConnections: number
  /** The most connections open at once (since the start or the last reset, which starts from those open then). */
  maxOpenConnections: number
}

/**
 * One protected request, as recorded by {@link ResourceServerControl.seen}.
 *
 * @example
 * ```ts
 * expect(kit.rs.seen().every((r: SeenRequest) => r.exp === undefined || r.exp * 1000 > r.at)).toBe(true) // no expired token was sent
 * ```
 */
export interface SeenRequest {
  method: string
  path: string
  status: number
  binding: Binding | 'none'
  /** `error` code of a rejection. */
  error?: string
  tokenJti?: string
  /** Access token `exp` (seconds). */
  exp?: number
  /** Access token `iat` (seconds). */
  tokenIat?: number
  clientId?: string
  jkt?: string
  x5t?: string
  proofJti?: string
  /** Proof `iat` (seconds). */
  iat?: number
  htu?: string
  /** When the request was received (ms since epoch). */
  at: number
}

/**
 * The in-process controls of a resource server.
 *
 * @example
 * ```ts
 * kit.rs.revokeToken((await session.token()).value) // the next request meets invalid_token
 * kit.rs.clearRevocations()
 * ```
 */
export interface ResourceServerControl {
  /** Turns DPoP nonce enforcement on or off (on creates a nonce when there is none). */
  requireNonce(on: boolean): void
  /** Replaces the current nonce and returns the new one; the old one is rejected from now on. */
  rotateNonce(): string
  /** The current nonce, sent as `DPoP-Nonce` on every response; undefined when there is none. */
  currentNonce(): string | undefined
  /** Whether nonces are enforced. */
  nonceRequired(): boolean
  /** The nonce before the last rotation (accepted only with `acceptPreviousNonce`). */
  previousNonce(): string | undefined
  /** Rejects this access token (by its `jti`) from now on. */
  revokeToken(accessToken: string): void
  /** Rejects the access token with this `jti` from now on. */
  revokeJti(jti: string): void
  /**
   * Rejects every token of the client issued at or before `issuedAtOrBefore` (seconds; default
   * now). JWT `iat` has one-second resolution, so a token issued in the same second as the
   * revocation is rejected too.
   */
  revokeClient(clientId: string, issuedAtOrBefore?: number): void
  /** Forgets every revocation. */
  clearRevocations(): void
  /** Requires an `acr` (and optionally a recent `auth_time`) on paths starting with the prefix. */
  requireStepUp(pathPrefix: string, requirement: StepUpRequirement): void
  clearStepUp(): void
  /** Requires claims in the token on paths starting with the prefix. */
  requireClaims(pathPrefix: string, claims: ClaimsRequest): void
  clearClaims(): void
  /** Requires every one of `scope` (space-separated) in the token's `scope` on paths starting with the prefix: else 403 `insufficient_scope`. */
  requireScope(pathPrefix: string, scope: string): void
  clearScope(): void
  counters(): ResourceServerCounters
  resetCounters(): void
  /** The last (up to 1000) protected requests, oldest first. */
  seen(): SeenRequest[]
}

/** Result of a policy check. */
export type PolicyOutcome =
  | { ok: true }
  | { ok: false; error: 'invalid_token'; description: string }
  | { ok: false; error: 'insufficient_user_authentication'; description: string; acrValues: string; maxAge?: number }
  | { ok: false; error: 'insufficient_claims'; description: string; claims: string }
  | { ok: false; error: 'insufficient_scope'; description: string; scope: string }

const SEEN_LIMIT = 1000
const REPLAY_LIMIT = 100_000
const TOKENS_SEEN_LIMIT = 100_000

function newCounters(): ResourceServerCounters {
  return {
    requests: 0,
    verified: 0,
    rejected: 0,
    rejectedProofs: 0,
    replayedJti: 0,
    nonceChallenges: 0,
    invalidToken: 0,
    stepUpChallenges: 0,
    claimsChallenges: 0,
    scopeChallenges: 0,
    verifierDisagreements: 0,
    byBinding: { dpop: 0, mtls: 0, bearer: 0 },
    tokensSeen: 0,
    connections: 0,
    openConnections: 0,
    maxOpenConnections: 0,
  }
}

function newNonce(): string {
  return randomBytes(18).toString('base64url')
}

function longestPrefixMatch<T>(rules: Map<string, T>, path: string): T | undefined {
  let best: string | undefined
  for (const prefix of rules.keys()) {
    if (path.startsWith(prefix) && (best === undefined || prefix.length > best.length)) best = prefix
  }
  return best === undefined ? undefined : rules.get(best)
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

function missingClaim(token: JWTPayload, request: ClaimsRequest): string | undefined {
  const wanted = (request['access_token'] ?? request) as Record<string, unknown>
  for (const [name, rule] of Object.entries(wanted)) {
    const actual = token[name]
    const { value, values } = (rule ?? {}) as { value?: unknown; values?: unknown }
    if (actual === undefined) return name
    if (value !== undefined && !sameJson(actual, value)) return name
    if (Array.isArray(values) && !values.some((candidate) => sameJson(actual, candidate))) return name
  }
  return undefined
}

/** Mutable state behind a resource server: nonces, replay cache, revocations, policies, counters. */
export interface ResourceServerState extends ResourceServerControl {
  /** Records a proof jti; false when it was seen before (a replay). */
  rememberProofJti(jti: string, iat: number | undefined): boolean
  /** Checks revocations and path policies for a verified token. */
  checkPolicy(path: string, token: JWTPayload): PolicyOutcome
  noteToken(jti: string | undefined): void
  noteSeen(entry: SeenRequest): void
  mutableCounters(): ResourceServerCounters
}

/** Creates the state of one resource server. */
export function createResourceServerState(options: { requireNonce: boolean; replayWindowSeconds: number }): ResourceServerState {
  let nonceRequired = options.requireNonce
  let nonce: string | undefined = nonceRequired ? newNonce() : undefined
  let previousNonce: string | undefined
  const replay = new Map<string, number>()
  const revokedJtis = new Set<string>()
  const revokedClients = new Map<string, number>()
  const stepUp = new Map<string, StepUpRequirement>()
  const claimsRules = new Map<string, ClaimsRequest>()
  const scopeRules = new Map<string, string>()
  const tokensSeen = new Set<string>()
  let seen: SeenRequest[] = []
  let counters = newCounters()

  const pruneReplay = (now: number): void => {
    for (const [jti, expires] of replay) {
      if (expires > now && replay.size <= REPLAY_LIMIT) break
      replay.delete(jti)
    }
  }

  return {
    requireNonce(on) {
      nonceRequired = on
      if (on) nonce ??= newNonce()
    },
    rotateNonce() {
      previousNonce = nonce
      nonce = newNonce()
      return nonce
    },
    currentNonce: () => nonce,
    previousNonce: () => previousNonce,
    nonceRequired: () => nonceRequired,
    revokeToken(accessToken) {
      const { jti } = decodeJwt(accessToken)
      if (typeof jti !== 'string') throw new TypeError('the access token has no jti')
      revokedJtis.add(jti)
    },
    revokeJti(jti) {
      if (typeof jti !== 'string' || jti === '') throw new TypeError('jti must be a non-empty string')
      revokedJtis.add(jti)
    },
    revokeClient(clientId, issuedAtOrBefore = Math.floor(Date.now() / 1000)) {
      revokedClients.set(clientId, Math.max(issuedAtOrBefore, revokedClients.get(clientId) ?? -Infinity))
    },
    clearRevocations() {
      revokedJtis.clear()
      revokedClients.clear()
    },
    requireStepUp(pathPrefix, requirement) {
      stepUp.set(pathPrefix, { ...requirement })
    },
    clearStepUp: () => stepUp.clear(),
    requireClaims(pathPrefix, claims) {
      claimsRules.set(pathPrefix, structuredClone(claims))
    },
    clearClaims: () => claimsRules.clear(),
    requireScope(pathPrefix, scope) {
      scopeRules.set(pathPrefix, scope)
    },
    clearScope: () => scopeRules.clear(),
    counters: () => ({ ...structuredClone(counters), tokensSeen: tokensSeen.size }),
    resetCounters() {
      counters = newCounters()
      tokensSeen.clear()
      seen = []
    },
    seen: () => seen.map((entry) => ({ ...entry })),

    rememberProofJti(jti, iat) {
      const now = Date.now()
      pruneReplay(now)
      const known = replay.get(jti)
      if (known !== undefined && known > now) return false
      const base = typeof iat === 'number' ? Math.max(iat * 1000, now) : now
      replay.delete(jti)
      replay.set(jti, base + options.replayWindowSeconds * 1000)
      return true
    },
    checkPolicy(path, token) {
      const jti = typeof token.jti === 'string' ? token.jti : undefined
      const clientId = typeof token['client_id'] === 'string' ? token['client_id'] : undefined
      if (jti !== undefined && revokedJtis.has(jti)) return { ok: false, error: 'invalid_token', description: 'token revoked' }
      const clientCutoff = clientId === undefined ? undefined : revokedClients.get(clientId)
      if (clientCutoff !== undefined && (token.iat ?? 0) <= clientCutoff) {
        return { ok: false, error: 'invalid_token', description: 'token revoked' }
      }

      const step = longestPrefixMatch(stepUp, path)
      if (step !== undefined) {
        const accepted = step.acr_values.split(' ').filter((value) => value !== '')
        const acr = token['acr']
        const authTime = token['auth_time']
        const now = Math.floor(Date.now() / 1000)
        let description: string | undefined
        if (typeof acr !== 'string' || !accepted.includes(acr)) {
          description = 'a different authentication level is required'
        } else if (step.max_age !== undefined && (typeof authTime !== 'number' || now - authTime > step.max_age)) {
          description = 'more recent authentication is required'
        }
        if (description !== undefined) {
          return {
            ok: false,
            error: 'insufficient_user_authentication',
            description,
            acrValues: step.acr_values,
            ...(step.max_age === undefined ? {} : { maxAge: step.max_age }),
          }
        }
      }

      const requiredScope = longestPrefixMatch(scopeRules, path)
      if (requiredScope !== undefined) {
        const held = new Set(typeof token.scope === 'string' ? token.scope.split(' ') : [])
        if (!requiredScope.split(' ').filter(Boolean).every((s) => held.has(s))) {
          return { ok: false, error: 'insufficient_scope', description: `scope "${requiredScope}" is required`, scope: requiredScope }
        }
      }

      const claimsRequest = longestPrefixMatch(claimsRules, path)
      if (claimsRequest !== undefined) {
        const missing = missingClaim(token, claimsRequest)
        if (missing !== undefined) {
          return {
            ok: false,
            error: 'insufficient_claims',
            description: `claim "${missing}" is required`,
            claims: Buffer.from(JSON.stringify(claimsRequest)).toString('base64url'),
          }
        }
      }
      return { ok: true }
    },
    noteToken(jti) {
      if (jti !== undefined && tokensSeen.size < TOKENS_SEEN_LIMIT) tokensSeen.add(jti)
    },
    noteSeen(entry) {
      seen.push(entry)
      if (seen.length > SEEN_LIMIT) seen.splice(0, seen.length - SEEN_LIMIT)
    },
    mutableCounters: () => counters,
  }
}
