import { z } from 'zod'
import { BoundError } from './errors/bound-error.js'

/** The rules of one factory's options: a zod schema per option name. */
export type OptionRules = Record<string, z.ZodType>

/**
 * A duration option. Every duration Bound takes is in **milliseconds**, and its name ends in `Ms`
 * (`tokenRequestTimeoutMs`, `connectTimeoutMs`…), as Node's own timers and `AbortSignal.timeout`
 * count: a value can never be read in the wrong unit.
 */
export function durationMs(min: number, max: number): z.ZodNumber {
  return z
    .number({ error: 'must be a duration in milliseconds (a number)' })
    .int('must be a whole number of milliseconds')
    .min(min, `must be at least ${min} ms`)
    .max(max, `must be at most ${max} ms (${max / 1000} s)`)
}

/** An option that must be a function (a callback, a token source, a fetch). */
export function functionRule(message = 'must be a function'): z.ZodType<(...args: never[]) => unknown> {
  return z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', message)
}

/** A clock option (`{ now() }`), as every factory that takes one accepts it. */
export const clockRule = z.custom<{ now(): number }>((v) => typeof v === 'object' && v !== null && typeof (v as { now?: unknown }).now === 'function', 'must be a clock ({ now() })')

/** Trust anchors or certificates: PEM text or bytes, one or several. */
export const pemListRule = z.union([z.string(), z.instanceof(Buffer), z.array(z.union([z.string(), z.instanceof(Buffer)]))])

/**
 * A checker for one factory's options: every key must be known (an unknown one is reported with the
 * known option it most resembles — `tokenRequestTimeout` → `tokenRequestTimeoutMs`), and every value
 * must pass its rule. Failures are `ERR_INVALID_CONFIG` naming the factory and the option. Made once
 * per factory (the schemas are built once), called at each construction.
 */
export function optionsChecker(where: string, rules: OptionRules): (options: unknown) => void {
  const schema = z.object(rules)
  const known = Object.keys(rules)
  return (options) => {
    if (options === undefined) return
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw new BoundError('ERR_INVALID_CONFIG', `${where}: the options must be an object`)
    }
    for (const key of Object.keys(options)) {
      if (!Object.hasOwn(rules, key)) throw new BoundError('ERR_INVALID_CONFIG', `${where}: unknown option ${JSON.stringify(key.slice(0, 60))}${suggestion(key, known)}`)
    }
    const result = schema.safeParse(options)
    if (!result.success) {
      const issue = result.error.issues[0]
      throw new BoundError('ERR_INVALID_CONFIG', `${where}: ${issue?.path.join('.') || 'options'}: ${issue?.message ?? 'invalid'}`)
    }
  }
}

/** `; did you mean …?` for a key close to a known one (a duration without `Ms` first). */
function suggestion(key: string, known: readonly string[]): string {
  if (known.includes(`${key}Ms`)) return ` — durations are in milliseconds: did you mean ${key}Ms?`
  const seconds = key.replace(/Seconds$/, 'Ms')
  if (seconds !== key && known.includes(seconds)) return ` — durations are in milliseconds: did you mean ${seconds}?`
  let best: string | undefined
  let bestDistance = 4
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase())
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best ? ` — did you mean ${best}?` : ` (known: ${known.join(', ')})`
}

/** Levenshtein distance (for short identifiers and origins). */
export function editDistance(a: string, b: string): number {
  if (a.length > 300 || b.length > 300) return Math.abs(a.length - b.length) + 300
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}
