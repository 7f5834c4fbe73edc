import { parseArgs, type ParseArgsConfig } from 'node:util'
import { usage } from './errors.js'

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * `util.parseArgs` in strict mode with positionals; its errors become usage errors (exit 2). Only
 * the first line of Node's message is kept, and it never repeats an option's value.
 */
export function parseCommand<const O extends Options>(command: string, args: readonly string[], options: O): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args: [...args], options, allowPositionals: true, strict: true })
  } catch (err) {
    const message = err instanceof Error ? (err.message.split('\n')[0] ?? err.message).replace(/\. To specify .*$/, '') : String(err)
    throw usage(`${command}: ${message}`)
  }
}

/** True when `-h`/`--help` appears before a `--` terminator. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false
    if (a === '-h' || a === '--help') return true
  }
  return false
}

/** A positive number of seconds, at most a day. */
export function parseSeconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw usage(`${flag} must be a number of seconds between 0 and 86400 (got ${JSON.stringify(value.slice(0, 20))})`)
  return n
}

/** Options whose value is a secret given on the command line. */
const SECRET_OPTIONS = ['--client-secret', '--token']

/** The values following `--client-secret` and `--token` on the raw command line, so that even a parse error cannot print them. */
export function secretsInArgv(args: readonly string[]): string[] {
  const found: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--') break
    for (const option of SECRET_OPTIONS) {
      if (a === option && i + 1 < args.length && args[i + 1] !== '-') found.push(args[i + 1]!)
      else if (a.startsWith(`${option}=`)) found.push(a.slice(option.length + 1))
    }
  }
  return found
}
