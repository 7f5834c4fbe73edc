/**
 * `@bound/core`: the pieces every Bound package shares — `BoundError` and its stable codes, the
 * RFC 9110 `WWW-Authenticate` parser and classifier, the event emitter's type, the "https, or http on loopback only" URL policy and the diagnostics channels.
 *
 * @packageDocumentation
 * @module @bound/core
 */
export { BoundError, isBoundError } from './errors/bound-error.js'
export type { BoundErrorCode, BoundErrorOptions } from './errors/bound-error.js'
export { TokenEndpointError } from './errors/token-endpoint-error.js'
export type { TokenEndpointErrorDetails } from './errors/token-endpoint-error.js'
export { IdentityProviderError } from './errors/identity-provider-error.js'
export { parseChallenges } from './challenge/parse.js'
export type { Challenge, ParseChallengesLimits } from './challenge/parse.js'
export { classifyChallenge, decodeClaimsParameter } from './challenge/classify.js'
export type { ChallengeKind, ClassifiedChallenge } from './challenge/classify.js'
export { systemClock } from './clock.js'
export type { Clock } from './clock.js'
export type { Emitter } from './events.js'
export { sanitizeProtocolText, redactedLabel } from './redact.js'
export { isLoopbackHost, assertSecureUrl, assertResourceIndicator } from './url-policy.js'
export { DIAGNOSTICS_CHANNELS, publishEvent, publishLog, publishError } from './diagnostics.js'
