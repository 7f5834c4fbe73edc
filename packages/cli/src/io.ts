import { readFile } from 'node:fs/promises'
import { isAbsolute, resolve } from 'node:path'
import { CliError, usage } from './errors.js'

/** Where `run` writes: `process.stdout` / `process.stderr`, or anything with a compatible `write`. */
export interface CliWritable {
  /** Writes a chunk. Returning `false` means "wait for `drain`" (when `once` exists). */
  write(chunk: string | Uint8Array): unknown
  /** Optional: lets `run` respect back-pressure while streaming a response body. */
  once?(event: 'drain', listener: () => void): unknown
}

/** The process environment `run` works in. Everything but `stdout` and `stderr` has a default. */
export interface CliIo {
  /** Command output: tokens, thumbprints, response bodies. */
  stdout: CliWritable
  /** Errors (`bound: <CODE>: <message>`), warnings and help requested by mistake. */
  stderr: CliWritable
  /** Read by a file argument given as `-` (`--data-file -`, `--dpop-key -`, `thumbprint -`…). Default `process.stdin`. */
  stdin?: AsyncIterable<Uint8Array | string>
  /** Environment variables for `--client-secret-env` and `--subject-token-env`. Default `process.env`. */
  env?: Record<string, string | undefined>
  /** Directory relative paths are resolved against. Default `process.cwd()`. */
  cwd?: string
}

/** What every command gets. */
export interface Context {
  readonly stdout: CliWritable
  readonly stderr: CliWritable
  readonly env: Record<string, string | undefined>
  readonly cwd: string
  stdin(): AsyncIterable<Uint8Array | string>
  /** Values never to print (client secrets): every error message is scrubbed of them. */
  readonly secrets: Set<string>
  /** Prints `bound: warning: <message>` on stderr. */
  warn(message: string): void
  /** Absolute path of a path given on the command line. */
  path(p: string): string
  /**
   * Reads a file named by `flag`, or fails with `ERR_FILE`. `-` is standard input, which one
   * option per command may read (a second `-` is a usage error).
   */
  readFile(p: string, flag: string): Promise<Buffer>
}

/** Reads a stream to its end. */
export async function readAll(source: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of source) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk))
  return Buffer.concat(chunks)
}

export function createContext(io: CliIo): Context {
  const cwd = io.cwd ?? process.cwd()
  let stdinReadFor: string | undefined
  const ctx: Context = {
    stdout: io.stdout,
    stderr: io.stderr,
    env: io.env ?? process.env,
    cwd,
    stdin: () => io.stdin ?? process.stdin,
    secrets: new Set(),
    warn(message) {
      io.stderr.write(`bound: warning: ${scrub(message, ctx.secrets)}\n`)
    },
    path: (p) => (isAbsolute(p) ? p : resolve(cwd, p)),
    async readFile(p, flag) {
      if (p === '-') {
        if (stdinReadFor !== undefined) throw usage(`${flag} -: standard input is already read for ${stdinReadFor} (only one option can read it)`)
        stdinReadFor = flag
        try {
          return await readAll(ctx.stdin())
        } catch (err) {
          const code = (err as { code?: unknown }).code
          throw new CliError('ERR_FILE', `cannot read the ${flag} from standard input (${typeof code === 'string' ? code : 'error'})`)
        }
      }
      try {
        return await readFile(ctx.path(p))
      } catch (err) {
        const code = (err as { code?: unknown }).code
        throw new CliError('ERR_FILE', `cannot read the ${flag} file ${p} (${typeof code === 'string' ? code : 'error'})`)
      }
    },
  }
  return ctx
}

/** Writes `chunk`, waiting for `drain` when the stream asks for it. */
export async function writeAll(out: CliWritable, chunk: string | Uint8Array): Promise<void> {
  if (out.write(chunk) === false && typeof out.once === 'function') {
    await new Promise<void>((resolve) => void out.once!('drain', resolve))
  }
}

/** Removes secrets and control characters (terminal escapes) from a message. */
export function scrub(message: string, secrets: ReadonlySet<string>): string {
  let out = message
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]')
  }
  // eslint-disable-next-line no-control-regex
  return out.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '')
}

/**
 * Closes a session, waiting at most `ms` (closing waits for requests still in flight, e.g. on a
 * server that never answered before `--timeout`).
 */
export async function closeWithin(session: { close(): Promise<void> }, ms = 1_000): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    session.close().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
      timer.unref()
    }),
  ])
  clearTimeout(timer)
}
