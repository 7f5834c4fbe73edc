import { BoundError } from '@bound/core'

/** What a grant contributes to a token request. */
export interface GrantContext {
  /** The resource (RFC 8707) the token is for, if any. */
  resource: string | undefined
  /** The scope asked for (space-separated), if any. */
  scope: string | undefined
  /** Extra parameters of this request (step-up `acr_values`, `claims`, …). */
  extra: Readonly<Record<string, string>>
  /** Seconds since the epoch. */
  now: number
}

/** How a token is earned at the AS. */
export interface Grant {
  /** The `grant_type`. */
  readonly type: string
  /** The default `resource` (RFC 8707) for tokens of this grant. */
  readonly resource: string | undefined
  /** The default `scope` for tokens of this grant. */
  readonly scope: string | undefined
  /** Adds the grant's parameters to the form body. */
  params(body: URLSearchParams, context: GrantContext): void | Promise<void>
}

/** Options shared by grants. */
export interface GrantOptions {
  /** The resource indicator (RFC 8707) — usually the API's base URL. */
  resource?: string
  /** Space-separated scopes. */
  scope?: string
}

const checkResource = (resource: string | undefined) => {
  if (resource === undefined) return
  let u: URL
  try {
    u = new URL(resource)
  } catch {
    throw new BoundError('ERR_INVALID_CONFIG', `resource must be an absolute URI (got ${JSON.stringify(resource).slice(0, 100)})`)
  }
  if (u.hash) throw new BoundError('ERR_INVALID_CONFIG', 'resource must not have a fragment (RFC 8707 §2)')
}

/**
 * The client credentials grant (RFC 6749 §4.4): the workload earns tokens with its own
 * credentials.
 *
 * @example
 * ```ts
 * createSession({ …, grant: clientCredentials({ resource: 'https://api.example.com', scope: 'orders:read' }) })
 * ```
 */
export function clientCredentials(options: GrantOptions = {}): Grant {
  checkResource(options.resource)
  return {
    type: 'client_credentials',
    resource: options.resource,
    scope: options.scope,
    params(body, ctx) {
      body.set('grant_type', 'client_credentials')
      if (ctx.scope) body.set('scope', ctx.scope)
      if (ctx.resource) body.set('resource', ctx.resource)
      for (const [k, v] of Object.entries(ctx.extra)) body.set(k, v)
    },
  }
}
