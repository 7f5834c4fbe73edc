import { z } from 'zod'
import { BoundError, assertSecureUrl, isLoopbackHost } from '@bound/core'
import type { TransportFetch } from '@bound/http'
import { networkError, readJsonObject } from './http.js'

/**
 * RFC 9728 protected resource metadata, with the members Bound uses typed and the rest kept.
 *
 * @example
 * ```ts
 * const prm: ProtectedResourceMetadata = await fetchProtectedResourceMetadata('https://mcp.example.com/mcp', undefined, { fetch })
 * session.useResourceMetadata(prm)
 * ```
 */
export interface ProtectedResourceMetadata {
  /** The resource identifier; checked against the URL the metadata was fetched for. */
  resource: string
  authorization_servers?: string[]
  scopes_supported?: string[]
  bearer_methods_supported?: string[]
  dpop_signing_alg_values_supported?: string[]
  dpop_bound_access_tokens_required?: boolean
  tls_client_certificate_bound_access_tokens?: boolean
  [member: string]: unknown
}

const list = z.array(z.string()).optional().catch(undefined)
const schema = z
  .object({
    resource: z.string(),
    authorization_servers: list,
    scopes_supported: list,
    bearer_methods_supported: list,
    dpop_signing_alg_values_supported: list,
    dpop_bound_access_tokens_required: z.boolean().optional().catch(undefined),
    tls_client_certificate_bound_access_tokens: z.boolean().optional().catch(undefined),
  })
  .passthrough()

/**
 * The RFC 9728 §3.1 metadata URLs for a resource, in the order to try: the path form, then the
 * root (as MCP clients do, T-8a).
 *
 * @example
 * ```ts
 * protectedResourceMetadataUrls('https://mcp.example.com/mcp')
 * // ['https://mcp.example.com/.well-known/oauth-protected-resource/mcp',
 * //  'https://mcp.example.com/.well-known/oauth-protected-resource']
 * ```
 */
export function protectedResourceMetadataUrls(resource: string | URL): string[] {
  const u = new URL(String(resource))
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')
  const urls = [`${u.origin}/.well-known/oauth-protected-resource${path}`]
  if (path) urls.push(`${u.origin}/.well-known/oauth-protected-resource`)
  return urls
}

/**
 * Options of {@link fetchProtectedResourceMetadata}.
 *
 * @example
 * ```ts
 * const options: ProtectedResourceDiscoveryOptions = { fetch, allowedOrigins: ['https://meta.example.com'], match: 'prefix' }
 * ```
 */
export interface ProtectedResourceDiscoveryOptions {
  /** The fetch to use, e.g. a transport's. */
  fetch: TransportFetch
  /** Aborts the discovery. */
  signal?: AbortSignal
  /**
   * Origins besides the resource's own from which metadata may be fetched when a server points
   * elsewhere (`resource_metadata="https://other…"`). Default none: server-chosen URLs on other
   * hosts are not followed (an SSRF guard, PRM-11).
   */
  allowedOrigins?: readonly string[]
  /** Largest document accepted, in bytes. Default 64 KiB. */
  maxBytes?: number
  /**
   * How a challenge-given document's `resource` must relate to the request URL: `'exact'` (RFC 9728
   * §3.3, the default) or `'prefix'` (a path prefix on the same origin, for servers that protect a
   * tree of URLs with one resource).
   */
  match?: 'exact' | 'prefix'
}

/**
 * Fetches and validates RFC 9728 metadata for the resource at `requestUrl`: from `metadataUrl` when
 * a challenge named one (it must be on the resource's origin or an allowed one), else from the
 * well-known URLs. The document's `resource` must be identical to the resource identifier the URL
 * was built from (RFC 9728 §3.3) — for a challenge, a prefix of the request URL on its origin.
 *
 * @example
 * ```ts
 * const prm = await fetchProtectedResourceMetadata('https://api.example.com/mcp', undefined, { fetch: transport.fetch })
 * prm.authorization_servers // ['https://as.example.com']
 * ```
 */
export async function fetchProtectedResourceMetadata(requestUrl: string | URL, metadataUrl: string | undefined, options: ProtectedResourceDiscoveryOptions): Promise<ProtectedResourceMetadata> {
  const target = new URL(String(requestUrl))
  let candidates: { url: string; expected: (resource: string) => boolean }[]
  if (metadataUrl !== undefined) {
    const m = assertSecureUrl(metadataUrl, 'resource_metadata URL')
    const allowed = new Set([target.origin, ...(options.allowedOrigins ?? []).map((o) => new URL(o).origin)])
    if (!allowed.has(m.origin)) {
      throw new BoundError('ERR_DISCOVERY', `The resource server at ${target.origin} points to metadata on ${m.origin}, which is not followed (allow it with resourceMetadata.allowedOrigins)`)
    }
    if (isLoopbackHost(m.hostname) && !isLoopbackHost(target.hostname)) {
      throw new BoundError('ERR_DISCOVERY', `The resource server at ${target.origin} points to metadata on a loopback address; not followed`)
    }
    const used = `${target.origin}${target.pathname}`
    candidates = [{ url: m.href, expected: (r) => (options.match === 'prefix' ? isPrefixResource(r, target) : r === used || (target.pathname === '/' && r === target.origin)) }]
  } else {
    const base = `${target.origin}${target.pathname}`
    const [pathForm, rootForm] = protectedResourceMetadataUrls(base)
    candidates = [{ url: pathForm!, expected: (r) => r === base.replace(/\/$/, '') || (r === base && target.pathname !== '/') }]
    // (MCP servers often serve the root document for their endpoint: the endpoint URL is accepted too)
    if (rootForm) candidates.push({ url: rootForm, expected: (r) => r === target.origin || r === base.replace(/\/$/, '') })
  }
  const tried: string[] = []
  for (const { url, expected } of candidates) {
    let res
    try {
      res = await options.fetch(url, { headers: { accept: 'application/json' }, redirect: 'error', ...(options.signal ? { signal: options.signal } : {}) })
    } catch (err) {
      throw networkError(err, `protected resource metadata at ${url}`, options.signal)
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {})
      tried.push(`${url} → ${res.status}`)
      if (res.status === 404 && candidates.length > 1) continue
      throw new BoundError('ERR_DISCOVERY', `Protected resource metadata at ${url} answered HTTP ${res.status}`)
    }
    const json = await readJsonObject(res, options.maxBytes ?? 65_536, 'ERR_DISCOVERY', `protected resource metadata at ${url}`)
    const parsed = schema.safeParse(json)
    if (!parsed.success) throw new BoundError('ERR_DISCOVERY', `Protected resource metadata at ${url} is malformed (${parsed.error.issues[0]?.path.join('.') || 'document'})`)
    const doc = parsed.data as ProtectedResourceMetadata
    if (!expected(doc.resource)) {
      throw new BoundError('ERR_DISCOVERY', `Protected resource metadata at ${url} is for ${JSON.stringify(doc.resource.slice(0, 200))}, not for ${target.origin}${target.pathname} (RFC 9728 §3.3${metadataUrl !== undefined && options.match !== 'prefix' ? "; if that resource covers this URL, allow it with resourceMetadata: { match: 'prefix' }" : ''})`)
    }
    for (const as of doc.authorization_servers ?? []) assertSecureUrl(as, `authorization server ${as} in the metadata of ${doc.resource}`)
    return doc
  }
  throw new BoundError('ERR_DISCOVERY', `No protected resource metadata for ${target.origin}${target.pathname} (tried ${tried.join(', ')})`)
}

/** `resource` is an https/http URL on the request's origin whose path is a prefix (by segments) of the request path. */
function isPrefixResource(resource: string, target: URL): boolean {
  let r: URL
  try {
    r = new URL(resource)
  } catch {
    return false
  }
  if (r.origin !== target.origin || r.search || r.hash) return false
  if (r.href !== resource && `${r.origin}${r.pathname}` !== resource && r.origin !== resource) return false
  const prefix = r.pathname.replace(/\/$/, '')
  return prefix === '' || target.pathname === prefix || target.pathname.startsWith(`${prefix}/`)
}
