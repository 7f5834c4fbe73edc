/**
 * Every error code Bound raises. Stable: callers may `switch (err.code)`. Each has an entry in
 * `docs/troubleshooting.md` ({@link BoundError.docs}). An aborted request rejects with the
 * signal's reason, as `fetch` does — there is no code for it.
 *
 * @example
 * ```ts
 * import type { BoundErrorCode } from '@bound/core'
 * const retryable: ReadonlySet<BoundErrorCode> = new Set(['ERR_TOKEN_UNAVAILABLE', 'ERR_NETWORK'])
 * ```
 */
export type BoundErrorCode =
  | 'ERR_INVALID_CONFIG'
  | 'ERR_INVALID_INPUT'
  | 'ERR_DISCOVERY'
  | 'ERR_TOKEN_ENDPOINT'
  | 'ERR_IDP_REFUSED'
  | 'ERR_TOKEN_RESPONSE_INVALID'
  | 'ERR_TOKEN_TYPE_MISMATCH'
  | 'ERR_TOKEN_UNAVAILABLE'
  | 'ERR_DPOP_KEY_INVALID'
  | 'ERR_DPOP_ALG_UNSUPPORTED'
  | 'ERR_DPOP_NONCE_INVALID'
  | 'ERR_DPOP_PROOF_REJECTED'
  | 'ERR_ORIGIN_NOT_ALLOWED'
  | 'ERR_INSECURE_TRANSPORT'
  | 'ERR_NETWORK'
  | 'ERR_PROXY'
  | 'ERR_SESSION_REVOKED'
  | 'ERR_STEP_UP_REQUIRED'
  | 'ERR_MTLS_CERTIFICATE_INVALID'
  | 'ERR_MTLS_CERTIFICATE_EXPIRED'
  | 'ERR_CLOSED'
  | 'ERR_POSTURE_UNHEALTHY'

import { publishError } from '../diagnostics.js'

const MARK = Symbol.for('@bound/core.BoundError')

/**
 * Options accepted by every Bound error constructor.
 *
 * @example
 * ```ts
 * throw new BoundError('ERR_NETWORK', 'Could not reach the token endpoint', { cause: err })
 * ```
 */
export interface BoundErrorOptions {
  /** The underlying error or value. Never put a secret here. */
  cause?: unknown
}

/**
 * The one base error of Bound. Every error Bound throws or attaches is a `BoundError` with a stable
 * {@link BoundErrorCode}. Identity survives two copies of the package in one process
 * (`instanceof` checks a `Symbol.for` marker, not the prototype chain).
 *
 * Messages, enumerable fields and `toJSON()` never carry access tokens, refresh tokens, proofs,
 * assertions, secrets or private keys.
 *
 * @example
 * ```ts
 * import { BoundError } from '@bound/core'
 * try { await fetch(url) } catch (err) {
 *   if (err instanceof BoundError && err.code === 'ERR_TOKEN_UNAVAILABLE') { … }
 * }
 * ```
 */
export class BoundError extends Error {
  /** Stable, machine-readable code. */
  readonly code: BoundErrorCode

  constructor(code: BoundErrorCode, message: string, options?: BoundErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    Object.defineProperty(this, 'name', { value: new.target.errorName, enumerable: false, configurable: true, writable: true })
    Object.defineProperty(this, MARK, { value: markOf(new.target), enumerable: false })
    // (subclasses finish their fields after this constructor: publish once they are set)
    queueMicrotask(() => publishError(this))
  }

  /**
   * Where this code is explained: its entry in Bound's troubleshooting guide
   * (`docs/troubleshooting.md#err_token_unavailable`), one entry per code.
   */
  get docs(): string {
    return `docs/troubleshooting.md#${this.code.toLowerCase()}`
  }

  /** The class name used for `name` and for cross-copy `instanceof`. Subclasses override it. */
  static errorName = 'BoundError'

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false
    const marks = (value as Record<symbol, unknown>)[MARK]
    return Array.isArray(marks) && marks.includes(this.errorName)
  }

  /** A JSON view with no secrets: name, code, message and the cause's name/code/message. */
  toJSON(): Record<string, unknown> {
    const json: Record<string, unknown> = { name: this.name, code: this.code, message: this.message, docs: this.docs }
    for (const key of Object.keys(this)) {
      if (key !== 'code') json[key] = (this as Record<string, unknown>)[key]
    }
    if (this.cause !== undefined) json.cause = describeCause(this.cause)
    return json
  }
}

function markOf(ctor: unknown): string[] {
  const names: string[] = []
  let c: unknown = ctor
  while (typeof c === 'function') {
    const name = (c as { errorName?: unknown }).errorName
    if (typeof name === 'string' && !names.includes(name)) names.push(name)
    c = Object.getPrototypeOf(c)
  }
  return names
}

function describeCause(cause: unknown): unknown {
  if (cause instanceof BoundError) return cause.toJSON()
  if (cause instanceof Error) {
    const out: Record<string, unknown> = { name: cause.name, message: cause.message }
    const code = (cause as { code?: unknown }).code
    if (typeof code === 'string') out.code = code
    return out
  }
  return typeof cause === 'string' ? cause : String(cause)
}

/**
 * True when `value` is a {@link BoundError} (from any copy of `@bound/core`), optionally with `code`.
 *
 * @example
 * ```ts
 * import { isBoundError } from '@bound/core'
 * try { await fetch(url) } catch (err) {
 *   if (isBoundError(err, 'ERR_TOKEN_UNAVAILABLE')) return retryLater(err.cause)
 *   throw err
 * }
 * ```
 */
export function isBoundError(value: unknown, code?: BoundErrorCode): value is BoundError {
  return value instanceof BoundError && (code === undefined || value.code === code)
}
