import { isBoundError } from '@bound/core'

/**
 * The exit codes of `bound`.
 *
 * | code | meaning |
 * | --- | --- |
 * | 0 | success (for `fetch`: a final status below 400) |
 * | 1 | runtime error: network, TLS, token endpoint, key or certificate, file, timeout |
 * | 2 | usage error: unknown command or option, missing or invalid argument |
 * | 3 | `thumbprint` only: the certificate is expired or not yet valid (its details are still printed) |
 * | 22 | `fetch` only: the server answered with an HTTP status of 400 or more (like `curl -f`) |
 */
export const EXIT_CODES = Object.freeze({ ok: 0, error: 1, usage: 2, certificateExpired: 3, httpError: 22 } as const)

/** Codes of the errors the CLI raises itself (the SDK's `BoundError` codes are printed as they are). */
export type CliErrorCode = 'ERR_USAGE' | 'ERR_FILE' | 'ERR_FILE_EXISTS' | 'ERR_TIMEOUT' | 'ERR_NETWORK' | 'ERR_HTTP_STATUS' | 'ERR_INTERNAL'

/** An error raised by the CLI itself, with the exit code it ends the command with. */
export class CliError extends Error {
  readonly code: CliErrorCode
  readonly exitCode: number
  constructor(code: CliErrorCode, message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CliError'
    this.code = code
    this.exitCode = options.exitCode ?? (code === 'ERR_USAGE' ? EXIT_CODES.usage : code === 'ERR_HTTP_STATUS' ? EXIT_CODES.httpError : EXIT_CODES.error)
  }
}

/** A usage error (exit code 2). */
export const usage = (message: string): CliError => new CliError('ERR_USAGE', message)

/** What `run` prints and returns for an error: its code, a one-line message and the exit code. */
export function describeError(err: unknown): { code: string; message: string; exitCode: number } {
  if (err instanceof CliError) return { code: err.code, message: err.message, exitCode: err.exitCode }
  if (isBoundError(err)) {
    // A one-shot command has no "next attempt": name the failure behind ERR_TOKEN_UNAVAILABLE itself.
    const shown = err.code === 'ERR_TOKEN_UNAVAILABLE' && isBoundError(err.cause) ? err.cause : err
    return { code: shown.code, message: shown.message, exitCode: EXIT_CODES.error }
  }
  if (err instanceof Error && err.name === 'TimeoutError') return { code: 'ERR_TIMEOUT', message: 'timed out (see --timeout)', exitCode: EXIT_CODES.error }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  return { code: 'ERR_INTERNAL', message, exitCode: EXIT_CODES.error }
}

/** Describes a transport failure (DNS, TCP, TLS) in one line: the Node/undici error code and message. */
export function networkDetail(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err
  if (!(cause instanceof Error)) return String(cause)
  const code = (cause as { code?: unknown }).code
  return `${typeof code === 'string' ? code : cause.name}: ${cause.message}`
}
