/// <reference path="./oidc-provider.d.ts" />
import { errors, type BackchannelAuthenticationRequestInstance, type GrantHandler, type OidcKoaContext, type Provider } from 'oidc-provider'
import { validateDpop } from 'oidc-provider/lib/helpers/grants.js'
import instance from 'oidc-provider/lib/helpers/weak_cache.js'
import { announceSecret } from './secrets.js'

/**
 * OpenID CIBA grant type (token requests with `auth_req_id`).
 *
 * @example
 * ```ts
 * new URLSearchParams({ grant_type: GRANT_TYPE_CIBA, auth_req_id: authReqId })
 * ```
 */
export const GRANT_TYPE_CIBA = 'urn:openid:params:grant-type:ciba'

/** Scopes that oidc-provider treats as OpenID Connect scopes (not resource scopes). */
const OIDC_SCOPES = new Set(['openid', 'offline_access'])
/** oidc-provider's default rule for `binding_message`. */
const BINDING_MESSAGE = /^[a-zA-Z0-9-._+/!?#]{1,20}$/
const REQUESTS_LIMIT = 1000

/**
 * State of a CIBA request as the testkit sees it (`expired` wins over `approved` / `denied` until
 * the outcome was delivered).
 *
 * @example
 * ```ts
 * const status: CibaRequestStatus = kit.ciba.get(authReqId)!.status // 'pending'
 * ```
 */
export type CibaRequestStatus = 'pending' | 'approved' | 'denied' | 'expired'

/**
 * A backchannel authentication request received by the testkit authorization server.
 *
 * @example
 * ```ts
 * const [request]: CibaRequest[] = kit.ciba.pending()
 * expect(request).toMatchObject({ loginHint: 'alice', bindingMessage: 'W4SCT', status: 'pending' })
 * ```
 */
export interface CibaRequest {
  /** The `auth_req_id` returned to the client. */
  authReqId: string
  /** The client that made the request. */
  clientId: string
  /** The end-user: the `login_hint` value, or the `sub` of an `id_token_hint`. */
  accountId: string
  /** The `login_hint` parameter, when that is how the user was named. */
  loginHint?: string
  /** The `binding_message` parameter. */
  bindingMessage?: string
  /** The `acr_values` parameter, split on spaces. */
  acrValues?: string[]
  /** The requested scopes (space-separated; always includes `openid`). */
  scope: string
  /** The resource indicator(s) the tokens will be for. */
  resource?: string | string[]
  /** The `requested_expiry` parameter, seconds. */
  requestedExpiry?: number
  /** When the request expires, epoch seconds. */
  expiresAt: number
  /** The `interval` returned to the client, seconds (absent when none was returned). */
  interval?: number
  status: CibaRequestStatus
  /** The `acr` of the approval. */
  acr?: string
  /** Whether the outcome (tokens or an error) was delivered to a poll; later polls get `invalid_grant`. */
  consumed: boolean
  /** Token requests for this `auth_req_id` that passed client authentication and DPoP nonce checks. */
  polls: number
  /** Epoch milliseconds. */
  createdAt: number
  /** Epoch milliseconds of the last counted poll. */
  lastPolledAt?: number
}

/**
 * Options of {@link CibaControl.approve}.
 *
 * @example
 * ```ts
 * await kit.ciba.approve(authReqId, { acr: 'urn:bound:acr:mfa' })
 * ```
 */
export interface CibaApproval {
  /**
   * The authentication context the user satisfied; it becomes the `acr` claim of the access token
   * (and ID token). Default: the first of the request's `acr_values`, else no `acr`.
   */
  acr?: string
  /** `amr` values (ID token only). */
  amr?: string[]
  /** `auth_time` (epoch seconds) of the access token; default now. */
  authTime?: number
}

/**
 * Options of {@link CibaControl.deny}.
 *
 * @example
 * ```ts
 * await kit.ciba.deny(authReqId, { description: 'the user said no' })
 * ```
 */
export interface CibaDenial {
  /** Error returned to the polling client; default `access_denied`. */
  error?: 'access_denied' | 'transaction_failed'
  /** Its `error_description`. */
  description?: string
}

/**
 * Test-driven "authentication device" of the testkit's CIBA (poll mode) support: the requests the
 * authorization server received, and the user's answer to them.
 *
 * @example
 * ```ts
 * // approve every request as it arrives: the client's first poll gets the tokens
 * const stop = kit.ciba.onRequest((request) => void kit.ciba.approve(request.authReqId))
 * // … or step by step
 * const request = await kit.ciba.waitForRequest()
 * kit.ciba.setSlowDown(1)                 // the next poll answers slow_down
 * await kit.ciba.approve(request.authReqId, { acr: 'urn:bound:acr:mfa' })
 * stop()
 * ```
 */
export interface CibaControl {
  /** The `backchannel_authentication_endpoint`. */
  readonly endpoint: string
  /** Requests still waiting for the user (not approved, denied or expired), oldest first. */
  pending(): CibaRequest[]
  /** Every request (up to the last 1000), oldest first. */
  requests(): CibaRequest[]
  /** One request by `auth_req_id`. */
  get(authReqId: string): CibaRequest | undefined
  /**
   * The user approves: the next poll gets tokens for the requested scope and resource, with the
   * `acr` claim of {@link CibaApproval.acr}. Throws for an unknown, expired or already answered request.
   */
  approve(authReqId: string, approval?: CibaApproval): Promise<void>
  /** The user refuses: the next poll gets `access_denied` (or the given error). */
  deny(authReqId: string, denial?: CibaDenial): Promise<void>
  /** Expires the request now: polls get `expired_token`. */
  expire(authReqId: string): Promise<void>
  /**
   * Called for every new request, after it was stored and before the response is sent (approving
   * from here makes the first poll succeed). Returns the unsubscribe function.
   */
  onRequest(listener: (request: CibaRequest) => void | Promise<void>): () => void
  /** The oldest pending request, or the next one to arrive; rejects after `timeoutMs` (default 5000). */
  waitForRequest(options?: { timeoutMs?: number }): Promise<CibaRequest>
  /**
   * The next `times` polls of known requests (pending or answered, not consumed or expired) answer
   * `slow_down` (after client authentication and the DPoP nonce check). 0 clears it.
   */
  setSlowDown(times: number): void
  /**
   * The `interval` (seconds) returned by later backchannel authentication responses; `undefined`
   * returns none (the client then uses 5 s, CIBA §7.3). Default 1.
   */
  setInterval(seconds: number | undefined): void
  /**
   * When on, a poll sooner than `interval` seconds after the request or the previous poll of the
   * same request answers `slow_down` (the interval is not increased). Default off.
   */
  enforceInterval(on: boolean): void
}

/** What the authorization server counts about CIBA. */
export interface CibaCounters {
  /** Successful backchannel authentication requests. */
  cibaRequests: number
  /** `slow_down` answers. */
  cibaSlowDowns: number
}

interface Entry {
  request: Omit<CibaRequest, 'status'> & { answer?: 'approved' | 'denied' }
  settling: Promise<unknown> | undefined
  /** Start of the current polling interval, epoch ms. */
  intervalStart: number
}

/** What CIBA needs from and gives to the authorization server. */
export interface CibaInstallation {
  control: CibaControl
  /** `features.ciba` of the provider configuration. */
  feature: Record<string, unknown>
  /** `acr` / `auth_time` of a CIBA access token (also after refresh). */
  tokenClaims(ctx: OidcKoaContext | undefined, token: { gty?: string }): Record<string, unknown> | undefined
  /** Installs the poll wrapper and the `interval` middleware; call after the provider exists. */
  install(provider: Provider): void
}

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}

function epoch(): number {
  return Math.floor(Date.now() / 1000)
}

/**
 * CIBA poll mode for the testkit authorization server: oidc-provider's `features.ciba` with
 * hooks that record requests for tests to approve or deny, a poll wrapper for `slow_down`, and
 * the `interval` of backchannel responses.
 */
export function createCiba(options: {
  endpoint: string
  counters: () => CibaCounters
  log: (message: string) => void
  interval?: number
}): CibaInstallation {
  const entries = new Map<string, Entry>()
  const listeners = new Set<(request: CibaRequest) => void | Promise<void>>()
  const waiters = new Set<(request: CibaRequest) => void>()
  let provider: Provider | undefined
  let slowDown = 0
  let interval: number | undefined = options.interval ?? 1
  let enforce = false

  const status = (entry: Entry): CibaRequestStatus => {
    const { request } = entry
    if (!request.consumed && request.expiresAt <= epoch()) return 'expired'
    return request.answer ?? 'pending'
  }
  const view = (entry: Entry): CibaRequest => {
    const { answer: _answer, ...request } = entry.request
    return { ...structuredClone(request), status: status(entry) }
  }

  const lookup = (authReqId: string): Entry => {
    const entry = entries.get(authReqId)
    if (entry === undefined) throw new Error(`unknown auth_req_id ${authReqId}`)
    return entry
  }
  const answerable = (authReqId: string): Entry => {
    const entry = lookup(authReqId)
    const current = status(entry)
    if (current !== 'pending') throw new Error(`CIBA request ${authReqId} is ${current}`)
    return entry
  }
  const stored = async (authReqId: string): Promise<BackchannelAuthenticationRequestInstance> => {
    if (provider === undefined) throw new Error('CIBA is not installed')
    const request = await provider.BackchannelAuthenticationRequest.find(authReqId, { ignoreExpiration: true })
    if (request === undefined) throw new Error(`CIBA request ${authReqId} is no longer stored`)
    return request
  }
  /** Runs the answer's storage work; polls wait for it. On failure the local answer is undone. */
  const settle = (entry: Entry, work: () => Promise<void>, undo?: () => void): Promise<void> => {
    const done = work().catch((error: unknown) => {
      undo?.()
      throw error
    })
    entry.settling = done.catch(() => undefined)
    return done
  }

  const control: CibaControl = {
    endpoint: options.endpoint,
    pending: () => [...entries.values()].filter((entry) => status(entry) === 'pending').map(view),
    requests: () => [...entries.values()].map(view),
    get(authReqId) {
      const entry = entries.get(authReqId)
      return entry === undefined ? undefined : view(entry)
    },
    approve(authReqId, approval = {}) {
      let entry: Entry
      try {
        entry = answerable(authReqId)
      } catch (error) {
        return Promise.reject(error)
      }
      const acr = approval.acr ?? entry.request.acrValues?.[0]
      entry.request.answer = 'approved'
      if (acr !== undefined) entry.request.acr = acr
      const undo = (): void => {
        delete entry.request.answer
        delete entry.request.acr
      }
      return settle(entry, async () => {
        const request = await stored(authReqId)
        const live = provider as Provider
        const grant = new live.Grant({ accountId: request.accountId, clientId: request.clientId })
        const scopes = (request.scope ?? '').split(' ').filter((scope) => scope !== '')
        const oidcScopes = scopes.filter((scope) => OIDC_SCOPES.has(scope))
        const resourceScopes = scopes.filter((scope) => !OIDC_SCOPES.has(scope))
        if (oidcScopes.length > 0) grant.addOIDCScope(oidcScopes.join(' '))
        const resources = request.resource === undefined ? [] : Array.isArray(request.resource) ? request.resource : [request.resource]
        for (const resource of resources) grant.addResourceScope(resource, resourceScopes.join(' '))
        await grant.save()
        await live.backchannelResult(request, grant, {
          ...(acr === undefined ? {} : { acr }),
          ...(approval.amr === undefined ? {} : { amr: approval.amr }),
          authTime: approval.authTime ?? epoch(),
        })
      }, undo)
    },
    deny(authReqId, denial = {}) {
      let entry: Entry
      try {
        entry = answerable(authReqId)
      } catch (error) {
        return Promise.reject(error)
      }
      entry.request.answer = 'denied'
      return settle(entry, async () => {
        const request = await stored(authReqId)
        const ErrorClass = denial.error === 'transaction_failed' ? errors.TransactionFailed : errors.AccessDenied
        await (provider as Provider).backchannelResult(request, new ErrorClass(denial.description))
        // oidc-provider 9.13 stores `error_description` under a name its model drops: store it as `errorDescription`.
        if (denial.description !== undefined) {
          request.errorDescription = denial.description
          await request.save()
        }
      }, () => {
        delete entry.request.answer
      })
    },
    expire(authReqId) {
      let entry: Entry
      try {
        entry = lookup(authReqId)
      } catch (error) {
        return Promise.reject(error)
      }
      const exp = epoch() - 1
      entry.request.expiresAt = exp
      return settle(entry, async () => {
        const request = await stored(authReqId)
        request.exp = exp
        await request.save()
      })
    },
    onRequest(listener) {
      listeners.add(listener)
      return () => {
        listeners.delete(listener)
      }
    },
    waitForRequest({ timeoutMs = 5000 } = {}) {
      const [first] = control.pending()
      if (first !== undefined) return Promise.resolve(first)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`no CIBA request within ${timeoutMs} ms`))
        }, timeoutMs)
        const waiter = (request: CibaRequest): void => {
          clearTimeout(timer)
          waiters.delete(waiter)
          resolve(request)
        }
        waiters.add(waiter)
      })
    },
    setSlowDown(times) {
      if (!Number.isInteger(times) || times < 0) throw new TypeError('times must be a non-negative integer')
      slowDown = times
    },
    setInterval(seconds) {
      if (seconds !== undefined && (!Number.isInteger(seconds) || seconds < 0)) throw new TypeError('interval must be a non-negative integer')
      interval = seconds
    },
    enforceInterval(on) {
      enforce = on
    },
  }

  const feature = {
    enabled: true,
    deliveryModes: ['poll'],
    // Any login_hint names the account (findAccount accepts every id).
    processLoginHint: async (_ctx: OidcKoaContext, loginHint: string) => loginHint,
    processLoginHintToken: async () => {
      throw new errors.InvalidRequest('login_hint_token is not supported by the testkit (use login_hint or id_token_hint)')
    },
    verifyUserCode: async () => undefined,
    validateRequestContext: async () => undefined,
    validateBindingMessage: async (_ctx: OidcKoaContext, bindingMessage: string | undefined) => {
      if (bindingMessage !== undefined && !BINDING_MESSAGE.test(bindingMessage)) {
        throw new errors.InvalidBindingMessage('the binding_message value, when provided, needs to be 1 - 20 characters in length and use only a basic set of characters (matching the regex: ^[a-zA-Z0-9-._+/!?#]{1,20}$ )')
      }
    },
    triggerAuthenticationDevice: async (ctx: OidcKoaContext, request: BackchannelAuthenticationRequestInstance) => {
      const params = request.params ?? {}
      const acrValues = firstString(params['acr_values'])?.split(' ').filter((value) => value !== '')
      const loginHint = firstString(params['login_hint'])
      const bindingMessage = firstString(params['binding_message'])
      const requestedExpiry = firstString(params['requested_expiry'])
      const now = Date.now()
      const entry: Entry = {
        request: {
          authReqId: request.jti,
          clientId: request.clientId,
          accountId: request.accountId,
          ...(loginHint === undefined ? {} : { loginHint }),
          ...(bindingMessage === undefined ? {} : { bindingMessage }),
          ...(acrValues === undefined || acrValues.length === 0 ? {} : { acrValues }),
          scope: request.scope ?? '',
          ...(request.resource === undefined ? {} : { resource: request.resource }),
          ...(requestedExpiry === undefined ? {} : { requestedExpiry: Number(requestedExpiry) }),
          expiresAt: request.exp ?? epoch() + request.expiration,
          ...(interval === undefined ? {} : { interval }),
          consumed: false,
          polls: 0,
          createdAt: now,
        },
        settling: undefined,
        intervalStart: now,
      }
      if (entries.size >= REQUESTS_LIMIT) {
        const oldest = entries.keys().next().value
        if (oldest !== undefined) entries.delete(oldest)
      }
      entries.set(request.jti, entry)
      announceSecret(request.jti)
      options.counters().cibaRequests += 1
      if (interval !== undefined && ctx.body !== null && typeof ctx.body === 'object') {
        (ctx.body as Record<string, unknown>)['interval'] = interval
      }
      for (const waiter of [...waiters]) waiter(view(entry))
      for (const listener of listeners) {
        try {
          const result = listener(view(entry))
          if (result instanceof Promise) result.catch((error: unknown) => options.log(`CIBA listener failed: ${String(error)}`))
        } catch (error) {
          options.log(`CIBA listener failed: ${error instanceof Error ? error.message : String(error)}`)
        }
      }
    },
  }

  const tokenClaims: CibaInstallation['tokenClaims'] = (ctx, token) => {
    if (!String(token.gty ?? '').split(' ').includes('ciba')) return undefined
    const entities = ctx?.oidc?.entities ?? {}
    const source = (entities['BackchannelAuthenticationRequest'] ?? entities['RefreshToken']) as { acr?: string; authTime?: number } | undefined
    if (source === undefined) return undefined
    const claims: Record<string, unknown> = {}
    if (source.acr !== undefined) claims['acr'] = source.acr
    if (source.authTime !== undefined) claims['auth_time'] = source.authTime
    return Object.keys(claims).length > 0 ? claims : undefined
  }

  const install = (live: Provider): void => {
    provider = live
    const original = instance(live).grantTypeHandlers.get(GRANT_TYPE_CIBA)
    if (original === undefined) throw new Error('oidc-provider did not register the CIBA grant')
    const poll: GrantHandler = async (ctx) => {
      const authReqId = firstString(ctx.oidc?.params?.['auth_req_id'])
      const entry = authReqId === undefined ? undefined : entries.get(authReqId)
      if (entry === undefined || entry.request.clientId !== ctx.oidc?.client?.clientId) return original(ctx)
      // The DPoP proof (and its nonce) first, as in oidc-provider's own grants.
      await validateDpop(live, ctx)
      await entry.settling
      const now = Date.now()
      const since = now - entry.intervalStart
      entry.request.polls += 1
      entry.request.lastPolledAt = now
      entry.intervalStart = now
      if (!entry.request.consumed && status(entry) !== 'expired') {
        const tooSoon = enforce && entry.request.interval !== undefined && since < entry.request.interval * 1000
        if (slowDown > 0 || tooSoon) {
          if (!tooSoon) slowDown -= 1
          options.counters().cibaSlowDowns += 1
          throw new errors.SlowDown()
        }
      }
      try {
        await original(ctx)
      } finally {
        const request = await live.BackchannelAuthenticationRequest.find(entry.request.authReqId, { ignoreExpiration: true })
        if (request?.consumed) entry.request.consumed = true
      }
    }
    // The same parameters as oidc-provider's own registration (with resource indicators enabled).
    live.registerGrantType(GRANT_TYPE_CIBA, poll, ['auth_req_id', 'resource'], ['resource'])
  }

  return { control, feature, tokenClaims, install }
}
