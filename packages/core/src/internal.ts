/**
 * `@bound/core/internal`: building blocks the other Bound packages share — single-flight, a bounded
 * LRU and a typed event emitter. Not part of the public API: no semver promise, may change in any
 * release. Applications import from `@bound/core`.
 *
 * @packageDocumentation
 * @module @bound/core/internal
 */
export { createSingleFlight } from './single-flight.js'
export type { SingleFlight } from './single-flight.js'
export { createLru } from './lru.js'
export type { Lru } from './lru.js'
export { createEmitter } from './events.js'
export { networkHint } from './errors/hints.js'
export { mergeClaims } from './claims.js'
export { optionsChecker, durationMs, editDistance, functionRule, clockRule, pemListRule } from './options.js'
export type { OptionRules } from './options.js'
export { z } from 'zod'
