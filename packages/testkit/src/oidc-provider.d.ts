// Minimal typings for the parts of oidc-provider 9 that the testkit uses. oidc-provider ships no
// types of its own; these are internal and never appear in the public declarations.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  import type { Socket } from 'node:net'

  export interface OidcKoaContext {
    method: string
    path: string
    status: number
    body: unknown
    socket: Socket
    req: IncomingMessage
    get(field: string): string
    set(field: string, value: string): void
    oidc?: OidcContext
  }

  export interface OidcClient {
    clientId: string
    clientAuthMethod: string
    dpopBoundAccessTokens?: boolean
    tlsClientCertificateBoundAccessTokens?: boolean
    grantTypeAllowed(grantType: string): boolean
  }

  export interface OidcContext {
    route?: string
    body?: Record<string, unknown>
    params?: Record<string, unknown>
    client?: OidcClient
    provider: Provider
    entities: Record<string, unknown>
    requestParamScopes: Set<string>
    /** Set by oidc-provider once attestation-based client authentication succeeded. */
    clientAttestation?: { method: 'attestation_pop_jwt' | 'dpop_combined'; signal: boolean }
    entity(name: string, value: unknown): void
  }

  /** An instance of `provider.ResourceServer`. */
  export interface ResourceServerInstance {
    audience?: string
    scope?: string
    readonly scopes: Set<string>
    identifier(): string
  }

  /** An instance of `provider.ClientCredentials`. */
  export interface ClientCredentialsToken {
    jti?: string
    scope?: string
    exp?: number
    jkt?: string
    'x5t#S256'?: string
    resourceServer?: ResourceServerInstance
    readonly tokenType: string
    readonly expiration: number
    setThumbprint(prop: 'x5t' | 'jkt', input: unknown): void
    save(): Promise<string>
  }

  /** An instance of `provider.BackchannelAuthenticationRequest` (CIBA). */
  export interface BackchannelAuthenticationRequestInstance {
    jti: string
    clientId: string
    accountId: string
    scope?: string
    resource?: string | string[]
    params?: Record<string, unknown>
    exp?: number
    consumed?: number
    acr?: string
    authTime?: number
    errorDescription?: string
    readonly expiration: number
    save(): Promise<string>
  }

  /** An instance of `provider.Grant`. */
  export interface GrantInstance {
    jti?: string
    addOIDCScope(scope: string): void
    addResourceScope(resource: string, scope: string): void
    save(): Promise<string>
  }

  export interface ProviderError extends Error {
    error?: string
    error_description?: string
    error_detail?: string
    status?: number
    statusCode?: number
  }

  export type KoaNext = () => Promise<void>
  export type KoaMiddleware = (ctx: OidcKoaContext, next: KoaNext) => Promise<void>
  export type GrantHandler = (ctx: OidcKoaContext) => Promise<void>

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>)
    readonly issuer: string
    readonly Client: { find(clientId: string): Promise<{ clientId: string } | undefined> }
    readonly ClientCredentials: new (init: { client: OidcClient; scope?: string | undefined }) => ClientCredentialsToken
    readonly ResourceServer: new (identifier: string, data: Record<string, unknown>) => ResourceServerInstance
    readonly BackchannelAuthenticationRequest: {
      find(id: string, options?: { ignoreExpiration?: boolean }): Promise<BackchannelAuthenticationRequestInstance | undefined>
    }
    readonly Grant: new (init: { accountId: string; clientId: string }) => GrantInstance
    backchannelResult(
      request: BackchannelAuthenticationRequestInstance,
      result: GrantInstance | ProviderError,
      options?: { acr?: string; amr?: string[]; authTime?: number },
    ): Promise<void>
    proxy: boolean
    callback(): (req: IncomingMessage, res: ServerResponse) => void
    use(middleware: KoaMiddleware): this
    on(event: string, listener: (...args: any[]) => void): this
    registerGrantType(name: string, handler: GrantHandler, params?: Iterable<string>, dupes?: Iterable<string>): void
  }

  export const errors: {
    InvalidTarget: new (description?: string) => ProviderError
    InvalidGrant: new (detail?: string) => ProviderError
    InvalidRequest: new (description?: string) => ProviderError
    InvalidScope: new (description: string, scope?: string) => ProviderError
    InvalidClientAuth: new (detail?: string) => ProviderError
    AccessDenied: new (description?: string) => ProviderError
    TransactionFailed: new (description?: string) => ProviderError
    SlowDown: new (description?: string) => ProviderError
    InvalidBindingMessage: new (description?: string) => ProviderError
  }

  export default Provider
}

// oidc-provider's own grant helpers (what its built-in grants use), bound to a provider by their
// first argument. Internal to oidc-provider 9 (no "exports" map, so reachable by path); pinned.
declare module 'oidc-provider/lib/helpers/grants.js' {
  import type { OidcKoaContext, Provider, ResourceServerInstance } from 'oidc-provider'

  export interface DpopValidation {
    thumbprint: string
    jti: string
    iat: number
  }

  export function validateDpop(provider: Provider, ctx: OidcKoaContext): Promise<DpopValidation | undefined>
  export function checkDpopReplay(
    provider: Provider,
    ctx: OidcKoaContext,
    dPoP: DpopValidation | undefined,
    clientId: string,
  ): Promise<void>
  export function checkDpopRequired(provider: Provider, ctx: OidcKoaContext, dPoP: DpopValidation | undefined): void
  export function checkMtlsCert(provider: Provider, ctx: OidcKoaContext): unknown
  export function resolveRequestedResources(provider: Provider, ctx: OidcKoaContext): Promise<ResourceServerInstance[]>
  export function validateClientScope(provider: Provider, ctx: OidcKoaContext, scopes?: Iterable<string> | string): Set<string>
  export function buildTokenResponse(provider: Provider, response: {
    accessToken: string
    tokenType: string
    expiresIn?: number
    scope?: string | undefined
    refreshToken?: string | undefined
    issuedTokenType?: string | undefined
  }): Record<string, unknown>
}

declare module 'oidc-provider/lib/helpers/weak_cache.js' {
  import type { GrantHandler, Provider } from 'oidc-provider'

  /** oidc-provider's private per-instance state. */
  export default function instance(provider: Provider): { grantTypeHandlers: Map<string, GrantHandler> }
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  export interface MemoryAdapterInstance {
    upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void>
    [method: string]: unknown
  }

  /** A per-provider in-memory store (what oidc-provider uses when no adapter is configured). */
  export function createMemoryAdapter(clockTolerance?: number): (model: string) => MemoryAdapterInstance
}
