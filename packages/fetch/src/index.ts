/**
 * `@bound/fetch`: a drop-in `fetch` (and an undici interceptor) that sends every request to the
 * configured origins with a DPoP- or certificate-bound token, and answers the servers' challenges.
 * Re-exports what an application needs from `@bound/oauth`, `@bound/dpop` and `@bound/core`.
 *
 * @packageDocumentation
 * @module @bound/fetch
 */
export { createBoundFetch } from './bound-fetch.js'
export type { BoundFetch, BoundFetchOptions } from './bound-fetch.js'
export { boundInterceptor } from './interceptor.js'
export { cibaStepUp } from './ciba.js'
export type { CibaStepUpOptions } from './ciba.js'
export { FetchNetworkError } from './network-error.js'
export type { BoundOptions, StepUpChallenge, StepUpResult } from './engine.js'
export { getChallenges, mergeClaims } from './challenges.js'
export type { ResponseChallenge } from './challenges.js'
export { BoundError, isBoundError } from '@bound/core'
export type { BoundErrorCode, ClassifiedChallenge, ChallengeKind } from '@bound/core'
export { createSession, clientCredentials, tokenExchange, jwtBearer, refreshToken, fromFile, fromEnv, clientSecretBasic, clientSecretPost, privateKeyJwt, tlsClientAuth, selfSignedTlsClientAuth, noClientAuth } from '@bound/oauth'
export type { Session, SessionOptions, BoundToken, TokenRequest, StepUpApproval } from '@bound/oauth'
export { generateDpopKey, importDpopKey } from '@bound/dpop'
export type { DpopKey, DpopAlg } from '@bound/dpop'
