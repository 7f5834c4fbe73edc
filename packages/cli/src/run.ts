import { secretsInArgv, wantsHelp } from './args.js'
import { describeError, EXIT_CODES, usage } from './errors.js'
import { HELP } from './help.js'
import { createContext, scrub, type CliIo, type Context } from './io.js'
import { version } from './version.js'

type Command = (args: readonly string[], ctx: Context) => Promise<number>

/** SDK options named in the SDK's messages, and the flags that set them. */
const SDK_OPTIONS: readonly [string, string][] = [["allow it with resourceMetadata: { match: 'prefix' }", 'allow it with --resource-match prefix']]

/** An SDK message with the SDK's option names replaced by the CLI's flags. */
const inCliWords = (message: string): string => SDK_OPTIONS.reduce((m, [sdk, cli]) => m.split(sdk).join(cli), message)

/** Loaded on demand: `--help` and `--version` need none of them, `keygen` needs no HTTP stack. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  keygen: async () => (await import('./commands/keygen.js')).keygen,
  thumbprint: async () => (await import('./commands/thumbprint.js')).thumbprint,
  token: async () => (await import('./commands/token.js')).token,
  fetch: async () => (await import('./commands/fetch.js')).fetchCommand,
  proof: async () => (await import('./commands/proof.js')).proof,
}

/**
 * Runs the `bound` command line in-process: `argv` without the node and script paths (e.g.
 * `['token', '--issuer', url, …]`). Output goes to `io.stdout`, errors to `io.stderr` as
 * `bound: <CODE>: <message>`. Resolves with the exit code (see {@link EXIT_CODES}); never rejects.
 *
 * @example
 * ```ts
 * import { run } from '@bound/cli'
 * let out = ''
 * const code = await run(['thumbprint', 'cert.pem', '--json'], { stdout: { write: (s) => (out += s) }, stderr: process.stderr })
 * ```
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const ctx = createContext(io)
  for (const s of secretsInArgv(argv)) ctx.secrets.add(s)
  const [name, ...rest] = argv
  try {
    if (name === undefined) {
      io.stderr.write(HELP.main!)
      return EXIT_CODES.usage
    }
    if (name === '-h' || name === '--help' || name === 'help') {
      const topic = rest[0] !== undefined && Object.hasOwn(COMMANDS, rest[0]) ? rest[0] : 'main'
      io.stdout.write(HELP[topic]!)
      return EXIT_CODES.ok
    }
    if (name === '-v' || name === '--version' || name === 'version') {
      io.stdout.write(`${version()}\n`)
      return EXIT_CODES.ok
    }
    if (!Object.hasOwn(COMMANDS, name)) {
      throw usage(name.startsWith('-') ? `unknown option ${JSON.stringify(name.slice(0, 40))} (options go after the command)` : `unknown command ${JSON.stringify(name.slice(0, 40))}`)
    }
    if (wantsHelp(rest)) {
      io.stdout.write(HELP[name]!)
      return EXIT_CODES.ok
    }
    const command = await COMMANDS[name]!()
    return await command(rest, ctx)
  } catch (err) {
    const { code, message, exitCode } = describeError(err)
    const line = inCliWords(scrub(message, ctx.secrets).replace(/\s*\n\s*/g, ' '))
    const tlsHint = code === 'ERR_NETWORK' && /SELF_SIGNED|UNABLE_TO_(GET_ISSUER|VERIFY_LEAF)/.test(message) ? ' (a server certificate from an internal CA? trust it with --ca FILE)' : ''
    // (the session's rule for an AS learned from RFC 9728 metadata, in the CLI's words)
    const issuerHint = code === 'ERR_INVALID_CONFIG' && /trustedIssuers/.test(message) ? ' (with client credentials, name the authorization server you trust with --issuer URL)' : ''
    const hint = tlsHint + issuerHint + (exitCode === EXIT_CODES.usage ? `\nRun 'bound ${name !== undefined && Object.hasOwn(COMMANDS, name) ? `${name} ` : ''}--help' for usage.` : '')
    io.stderr.write(`bound: ${code}: ${line}${hint}\n`)
    return exitCode
  }
}
