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

  export interface OidcContext {
    route?: string
    body?: Record<string, unknown>
    params?: Record<string, unknown>
    client?: { clientId: string }
    entities: Record<string, unknown>
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

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>)
    readonly issuer: string
    readonly Client: { find(clientId: string): Promise<{ clientId: string } | undefined> }
    proxy: boolean
    callback(): (req: IncomingMessage, res: ServerResponse) => void
    use(middleware: KoaMiddleware): this
    on(event: string, listener: (...args: any[]) => void): this
  }

  export const errors: {
    InvalidTarget: new (description?: string) => ProviderError
  }

  export default Provider
}
