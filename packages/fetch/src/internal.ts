/**
 * `@bound/fetch/internal`: the challenge engine every integration (the bound fetch, the undici
 * interceptor, and integrations for other HTTP clients) is an adapter onto. Not part of the public
 * API: no semver promise, may change in any release. Applications use `createBoundFetch` or
 * `boundInterceptor` from `@bound/fetch`.
 *
 * @packageDocumentation
 * @module @bound/fetch/internal
 */
export { createChallengeEngine } from './engine.js'
export { createBoundSender } from './bound-fetch.js'
export type { BoundSender, SendLimits } from './bound-fetch.js'
export { decodedHeaderRecord } from './node-headers.js'
export { systemCodeOf } from './network-error.js'
export type { ChallengeEngine, EngineExchange, Credentials } from './engine.js'
export type { HeadersView } from './exchange.js'
