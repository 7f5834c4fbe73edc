/**
 * `@bound/cli`: the `bound` command (DPoP keys, certificate thumbprints, bound tokens and bound
 * requests from the shell), and {@link run} to call it in-process.
 *
 * @packageDocumentation
 */
export { run } from './run.js'
export type { CliIo, CliWritable } from './io.js'
export { EXIT_CODES } from './errors.js'
export type { CliErrorCode } from './errors.js'
