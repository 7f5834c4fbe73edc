/**
 * `@bound/http`: the transport every Bound session talks HTTP through — undici's `fetch` and
 * dispatcher API from one undici copy, with Bound's routing on top: the client certificate only on
 * credentialed requests and a new set of connections per certificate generation, egress proxies
 * (`HTTPS_PROXY`/`NO_PROXY` or explicit, CONNECT tunnels), bounded pools, and the user's own undici
 * interceptors composed beneath.
 *
 * @packageDocumentation
 * @module @bound/http
 */
export { createTransport } from './transport.js'
export type { Transport, TransportOptions, TransportFetch, TransportRequestOptions, Interceptor } from './transport.js'
export type { ProxyOptions, ProxySetting } from './proxy.js'
