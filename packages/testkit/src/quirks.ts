/// <reference path="./oidc-provider.d.ts" />
import { errors, type GrantHandler, type KoaMiddleware, type OidcKoaContext, type Provider, type ProviderError } from 'oidc-provider'
import instance from 'oidc-provider/lib/helpers/weak_cache.js'
import type { Challenge } from './www-authenticate.js'

/**
 * Behaviours of real authorization servers that differ from the testkit's standard one, switched
 * on with `startAuthorizationServer({ quirks })`, `startTestkit({ asQuirks })` or
 * {@link AuthorizationServer.setQuirks}. Each reproduces what clients meet at some vendor.
 *
 * @example
 * ```ts
 * const kit = await startTestkit({ asQuirks: { audienceParameter: true, omitExpiresIn: true } })
 * kit.as.setQuirks({ lowercaseTokenType: true }) // replaces the set
 * ```
 */
export interface AuthorizationServerQuirks {
  /**
   * Auth0-style targeting of client credentials requests: the API is named by `audience` (a
   * registered resource's identifier) and `resource` is ignored. No `audience` →
   * `403 access_denied` ("No audience parameter was provided"); an unknown one →
   * `403 access_denied` ("Service not found: …"). Other grants are unchanged.
   */
  audienceParameter?: boolean
  /**
   * Leave `dpop_signing_alg_values_supported` out of both discovery documents (DPoP is still
   * accepted with every alg the testkit supports).
   */
  omitDpopSigningAlgs?: boolean
  /** Leave `expires_in` out of successful token responses (the JWT still has its `exp`). */
  omitExpiresIn?: boolean
  /** Send `token_type` in lower case (`dpop`, `bearer`): RFC 6749 §5.1 makes it case-insensitive. */
  lowercaseTokenType?: boolean
}

/**
 * Behaviours of real resource servers that differ from the testkit's standard one, switched on
 * with `startResourceServer({ quirks })`, `startTestkit({ rsQuirks })` or
 * {@link ResourceServer.setQuirks}.
 *
 * @example
 * ```ts
 * const kit = await startTestkit({ rsRequiresNonce: false, rsQuirks: { errorlessChallenges: true } })
 * ```
 */
export interface ResourceServerQuirks {
  /**
   * Microsoft Entra ID style challenges: every rejection (401, and 403 for scope) carries only
   * `WWW-Authenticate: Bearer realm="…", authorization_uri="…"` — no `error`, no DPoP challenge,
   * no `resource_metadata` — whatever went wrong. `true` uses `realm=""` and the testkit AS's
   * authorization endpoint (`<issuer>/auth`); pass `{ realm, authorizationUri }` to choose.
   * Nonce challenges lose their error too, so use it with `requireNonce: false` (Entra has no
   * DPoP nonces). The JSON body keeps `{ error, error_description }`.
   */
  errorlessChallenges?: boolean | { realm?: string; authorizationUri?: string }
}

function copyQuirks<T extends object>(quirks: T | undefined, known: ReadonlyArray<keyof T>, what: string): T {
  if (quirks === undefined) return {} as T
  if (typeof quirks !== 'object' || quirks === null) throw new TypeError(`${what} must be an object`)
  for (const key of Object.keys(quirks)) {
    if (!known.includes(key as keyof T)) throw new TypeError(`unknown ${what} member ${key}`)
  }
  return structuredClone(quirks)
}

const AS_QUIRKS: ReadonlyArray<keyof AuthorizationServerQuirks> = ['audienceParameter', 'omitDpopSigningAlgs', 'omitExpiresIn', 'lowercaseTokenType']
const RS_QUIRKS: ReadonlyArray<keyof ResourceServerQuirks> = ['errorlessChallenges']

/** A checked copy of authorization server quirks (TypeError for an unknown member). */
export function checkAuthorizationServerQuirks(quirks: AuthorizationServerQuirks | undefined): AuthorizationServerQuirks {
  return copyQuirks(quirks, AS_QUIRKS, 'authorization server quirks')
}

/** A checked copy of resource server quirks (TypeError for an unknown member or a non-string realm / URI). */
export function checkResourceServerQuirks(quirks: ResourceServerQuirks | undefined): ResourceServerQuirks {
  const copy = copyQuirks(quirks, RS_QUIRKS, 'resource server quirks')
  const challenges = copy.errorlessChallenges
  if (typeof challenges === 'object' && challenges !== null) {
    for (const [name, value] of Object.entries(challenges)) {
      if (name !== 'realm' && name !== 'authorizationUri') throw new TypeError(`unknown errorlessChallenges member ${name}`)
      if (typeof value !== 'string') throw new TypeError(`errorlessChallenges.${name} must be a string`)
    }
  } else if (challenges !== undefined && typeof challenges !== 'boolean') {
    throw new TypeError('errorlessChallenges must be a boolean or { realm?, authorizationUri? }')
  }
  return copy
}

const DISCOVERY_PATHS = new Set(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])

function accessDenied(description: string): ProviderError {
  const error = new errors.AccessDenied(description)
  // Auth0 answers these with 403 Forbidden.
  error.status = 403
  error.statusCode = 403
  return error
}

function firstString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}

/**
 * Installs the authorization server quirks on `provider`: a middleware that edits discovery
 * documents and token responses, and a wrapper around oidc-provider's client credentials grant
 * (read from its registered handlers, like the refresh wrapper in grants.ts) for
 * `audienceParameter`. `current()` is read on every request, so quirks can change at run time.
 */
export function installAuthorizationServerQuirks(deps: {
  provider: Provider
  current: () => AuthorizationServerQuirks
  /** Whether `identifier` names a registered resource. */
  knownResource: (identifier: string) => boolean
}): void {
  const { provider, current } = deps

  const editResponses: KoaMiddleware = async (ctx: OidcKoaContext, next) => {
    await next()
    const quirks = current()
    if (ctx.status !== 200 || typeof ctx.body !== 'object' || ctx.body === null) return
    const body = ctx.body as Record<string, unknown>
    if (ctx.method === 'GET' && DISCOVERY_PATHS.has(ctx.path) && quirks.omitDpopSigningAlgs) {
      const { dpop_signing_alg_values_supported: _omitted, ...rest } = body
      ctx.body = rest
    } else if (ctx.method === 'POST' && ctx.path === '/token') {
      const edited = { ...body }
      if (quirks.omitExpiresIn) delete edited['expires_in']
      if (quirks.lowercaseTokenType && typeof edited['token_type'] === 'string') edited['token_type'] = edited['token_type'].toLowerCase()
      ctx.body = edited
    }
  }
  provider.use(editResponses)

  const original = instance(provider).grantTypeHandlers.get('client_credentials')
  if (original === undefined) throw new Error('oidc-provider has no client_credentials handler to wrap')
  const clientCredentials: GrantHandler = async (ctx) => {
    const params = ctx.oidc?.params
    if (!current().audienceParameter || params === undefined) {
      if (params !== undefined) delete params['audience']
      return original(ctx)
    }
    const audience = firstString(params['audience'])
    if (audience === undefined || audience === '') {
      throw accessDenied('No audience parameter was provided, and no default audience has been configured')
    }
    if (!deps.knownResource(audience)) throw accessDenied(`Service not found: ${audience}`)
    // `resource` is not read by this kind of AS: the audience alone picks the API.
    params['resource'] = audience
    delete params['audience']
    return original(ctx)
  }
  // The same parameters as oidc-provider registers (with resource indicators), plus `audience`.
  provider.registerGrantType('client_credentials', clientCredentials, ['scope', 'resource', 'audience'], ['resource'])
}

/** The one challenge an RS with `errorlessChallenges` sends, whatever the rejection. */
export function errorlessChallenge(setting: NonNullable<ResourceServerQuirks['errorlessChallenges']>, issuer: string): Challenge {
  const custom = typeof setting === 'object' ? setting : {}
  return {
    scheme: 'Bearer',
    params: [['realm', custom.realm ?? ''], ['authorization_uri', custom.authorizationUri ?? `${issuer}/auth`]],
  }
}
