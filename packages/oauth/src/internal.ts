/**
 * `@bound/oauth/internal`: the parts other Bound packages build on — the token manager, the
 * abortable wait, the token constructor. Not part of the public API: no semver promise, may change
 * in any release. Applications use `createSession` from `@bound/oauth`.
 *
 * @packageDocumentation
 * @module @bound/oauth/internal
 */
export { createTokenManager, waitFor } from './token-manager.js'
export type { TokenManager, TokenManagerOptions, TokenManagerEvent, Timers } from './token-manager.js'
export { createBoundToken } from './token.js'
