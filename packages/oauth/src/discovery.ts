import { z } from 'zod'
import { BoundError, assertSecureUrl } from '@bound/core'
import type { TransportFetch } from '@bound/http'
import { networkError, readJsonObject } from './http.js'

/**
 * RFC 8414 metadata, with the members Bound uses typed and the rest kept.
 *
 * @example
 * ```ts
 * const metadata: AuthorizationServerMetadata | undefined = await session.metadata()
 * metadata?.dpop_signing_alg_values_supported // e.g. ['ES256', 'EdDSA']
 * ```
 */
export interface AuthorizationServerMetadata {
  /** The issuer identifier; identical to the one discovery was asked for. */
  issuer: string
  token_endpoint?: string
  revocation_endpoint?: string
  introspection_endpoint?: string
  jwks_uri?: string
  token_endpoint_auth_methods_supported?: string[]
  token_endpoint_auth_signing_alg_values_supported?: string[]
  grant_types_supported?: string[]
  dpop_signing_alg_values_supported?: string[]
  tls_client_certificate_bound_access_tokens?: boolean
  mtls_endpoint_aliases?: Record<string, string>
  [member: string]: unknown
}

const stringList = z.array(z.string()).optional().catch(undefined)
const metadataSchema = z
  .object({
    issuer: z.string(),
    token_endpoint: z.string().optional(),
    revocation_endpoint: z.string().optional().catch(undefined),
    introspection_endpoint: z.string().optional().catch(undefined),
    jwks_uri: z.string().optional().catch(undefined),
    token_endpoint_auth_methods_supported: stringList,
    token_endpoint_auth_signing_alg_values_supported: stringList,
    grant_types_supported: stringList,
    dpop_signing_alg_values_supported: stringList,
    tls_client_certificate_bound_access_tokens: z.boolean().optional().catch(undefined),
    mtls_endpoint_aliases: z.record(z.string(), z.string()).optional().catch(undefined),
  })
  .passthrough()

/**
 * The discovery URLs for `issuer`, in the order tried (RFC 8414 §3.1, then OpenID Connect):
 * `/.well-known/oauth-authorization-server` inserted before the path, then
 * `/.well-known/openid-configuration` inserted, then appended.
 *
 * @example
 * ```ts
 * discoveryUrls('https://as.example.com/tenant1')
 * // ['https://as.example.com/.well-known/oauth-authorization-server/tenant1',
 * //  'https://as.example.com/.well-known/openid-configuration/tenant1',
 * //  'https://as.example.com/tenant1/.well-known/openid-configuration']
 * ```
 */
export function discoveryUrls(issuer: string): string[] {
  const u = new URL(issuer)
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')
  const urls = [`${u.origin}/.well-known/oauth-authorization-server${path}`, `${u.origin}/.well-known/openid-configuration${path}`]
  if (path) urls.push(`${u.origin}${path}/.well-known/openid-configuration`)
  return urls
}

/**
 * Options of {@link discoverAuthorizationServer}.
 *
 * @example
 * ```ts
 * const options: DiscoveryOptions = { fetch: createTransport({ ca }).fetch, signal: AbortSignal.timeout(5_000) }
 * ```
 */
export interface DiscoveryOptions {
  /** The fetch to use, e.g. a transport's. */
  fetch: TransportFetch
  /** Aborts the discovery. */
  signal?: AbortSignal
  /** Largest metadata document accepted, in bytes. Default 256 KiB. */
  maxBytes?: number
}

/**
 * Fetches and validates RFC 8414 metadata for `issuer`. The document's `issuer` must be identical
 * to the one asked for (RFC 8414 §3.3), endpoints must be https (or loopback http).
 *
 * @example
 * ```ts
 * const metadata = await discoverAuthorizationServer('https://as.example.com', { fetch: transport.fetch })
 * ```
 */
export async function discoverAuthorizationServer(issuer: string, options: DiscoveryOptions): Promise<AuthorizationServerMetadata> {
  assertSecureUrl(issuer, 'issuer')
  const tried: string[] = []
  for (const url of discoveryUrls(issuer)) {
    let res
    try {
      res = await options.fetch(url, { headers: { accept: 'application/json' }, redirect: 'error', ...(options.signal ? { signal: options.signal } : {}) })
    } catch (err) {
      if (options.signal?.aborted && (options.signal.reason as Error | undefined)?.name === 'TimeoutError') {
        throw new BoundError('ERR_NETWORK', `Authorization server metadata at ${url} did not answer in time`, { cause: options.signal.reason })
      }
      throw networkError(err, `authorization server metadata at ${url}`, options.signal)
    }
    if (res.status === 404 || res.status === 405 || res.status === 400) {
      await res.body?.cancel().catch(() => {})
      tried.push(`${url} → ${res.status}`)
      continue
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {})
      // the server's trouble (5xx, 429) is transient; anything else is a discovery failure
      // (a 401/403 is what a protected API answers: the commonest mix-up is the API's URL as issuer)
      const hint = res.status === 401 || res.status === 403 ? ' — as a protected API would: is `issuer` the authorization server’s identifier, not the API’s URL?' : ''
      throw new BoundError(res.status >= 500 || res.status === 429 ? 'ERR_NETWORK' : 'ERR_DISCOVERY', `Authorization server metadata at ${url} answered HTTP ${res.status}${hint}`)
    }
    const json = await readJsonObject(res, options.maxBytes ?? 262_144, 'ERR_DISCOVERY', `authorization server metadata at ${url}`)
    const parsed = metadataSchema.safeParse(json)
    if (!parsed.success) throw new BoundError('ERR_DISCOVERY', `Authorization server metadata at ${url} is malformed (${parsed.error.issues[0]?.path.join('.') || 'document'})`)
    const metadata = parsed.data as AuthorizationServerMetadata
    if (metadata.issuer !== issuer) {
      throw new BoundError('ERR_DISCOVERY', `Authorization server metadata at ${url} names issuer ${JSON.stringify(metadata.issuer.slice(0, 200))}, not ${JSON.stringify(issuer)} (RFC 8414 §3.3 requires them to be identical)`)
    }
    for (const key of ['token_endpoint', 'revocation_endpoint', 'introspection_endpoint'] as const) {
      const endpoint = metadata[key]
      if (endpoint !== undefined) assertSecureUrl(endpoint, `${key} in the metadata of ${issuer}`)
    }
    return metadata
  }
  throw new BoundError('ERR_DISCOVERY', `No authorization server metadata found for ${issuer} (tried ${tried.join(', ')}) — check \`issuer\` (the AS's issuer identifier, as its metadata names it), or give \`tokenEndpoint\` instead`)
}
