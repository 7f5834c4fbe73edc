import { get } from 'node:https'
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'

/** Where the resource server gets the authorization server's public keys. */
export interface JwksSourceOptions {
  /** A fixed key set; when given, {@link JwksSourceOptions.jwksUri} is not fetched. */
  jwks?: JSONWebKeySet
  /** An https `jwks_uri` to fetch (trusting {@link JwksSourceOptions.ca}). */
  jwksUri?: string
  /** PEM CA(s) to trust when fetching. */
  ca?: string
  /** Minimum time between two fetches caused by an unknown `kid`; default 1000 ms. */
  refreshCooldownMs?: number
}

/** A cached JWKS, refreshed when a token names an unknown key. */
export interface JwksSource {
  /** The cached key set (fetched on first use). */
  current(): Promise<JSONWebKeySet>
  /** Fetches again (no-op for a fixed key set). */
  refresh(): Promise<JSONWebKeySet>
  /**
   * Fetches again unless the last fetch is younger than the cooldown; falls back to the cached
   * set when the fetch fails (e.g. during an authorization server outage).
   */
  refreshIfStale(): Promise<JSONWebKeySet>
  /** A `jose` key resolver over the cached set, refreshing once on an unknown `kid`. */
  getKey: JWTVerifyGetKey
}

function fetchJson(url: string, ca: string | undefined): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = get(url, { ca, agent: false, headers: { accept: 'application/json' }, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('error', reject)
      response.on('end', () => {
        if (response.statusCode !== 200) {
          reject(new Error(`GET ${url} answered ${response.statusCode ?? 'no status'}`))
          return
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
        } catch (error) {
          reject(error)
        }
      })
    })
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)))
    request.on('error', reject)
  })
}

/** Creates a cached JWKS source over a fixed key set or an https `jwks_uri`. */
export function createJwksSource(options: JwksSourceOptions): JwksSource {
  if (options.jwks === undefined && options.jwksUri === undefined) {
    throw new TypeError('either jwks or jwksUri is required')
  }
  const cooldown = options.refreshCooldownMs ?? 1000
  let cached: JSONWebKeySet | undefined = options.jwks
  let resolver = cached === undefined ? undefined : createLocalJWKSet(cached)
  let inflight: Promise<JSONWebKeySet> | undefined
  let lastFetch = 0

  const refresh = (): Promise<JSONWebKeySet> => {
    if (options.jwksUri === undefined) return Promise.resolve(cached ?? { keys: [] })
    inflight ??= fetchJson(options.jwksUri, options.ca)
      .then((body) => {
        const keys = (body as { keys?: unknown } | null)?.keys
        if (!Array.isArray(keys)) throw new Error(`${options.jwksUri ?? ''} is not a JWKS`)
        cached = body as JSONWebKeySet
        resolver = createLocalJWKSet(cached)
        lastFetch = Date.now()
        return cached
      })
      .finally(() => {
        inflight = undefined
      })
    return inflight
  }

  const current = async (): Promise<JSONWebKeySet> => cached ?? refresh()

  const isStale = (): boolean => options.jwksUri !== undefined && Date.now() - lastFetch >= cooldown

  const refreshIfStale = async (): Promise<JSONWebKeySet> => {
    if (!isStale()) return current()
    try {
      return await refresh()
    } catch (error) {
      if (cached !== undefined) return cached
      throw error
    }
  }

  const localResolver = async (): Promise<JWTVerifyGetKey> => {
    if (resolver === undefined) await refresh()
    if (resolver === undefined) throw new Error('no JWKS available')
    return resolver
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await (await localResolver())(header, token)
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey) || !isStale()) throw error
      await refresh()
      return (await localResolver())(header, token)
    }
  }

  return { current, refresh, refreshIfStale, getKey }
}
