import { parseCommand } from '../args.js'
import { buildSession, credentialOptions } from '../credentials.js'
import { CliError, usage } from '../errors.js'
import { closeWithin, type Context } from '../io.js'
import { createVerbose } from '../verbose.js'

/**
 * `bound token`: earns an access token (client credentials, or token exchange with a subject
 * token) and prints it; with `--json`, `{ access_token, token_type, expires_at, scope, jkt?, x5t? }`.
 */
export async function token(args: readonly string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseCommand('token', args, { ...credentialOptions, json: { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' } })
  // (a stray argument is not echoed: it may be a secret that lost its flag)
  if (positionals.length > 0) throw usage(`token takes no arguments (${positionals.length} unexpected)`)
  const verbose = values.verbose ? createVerbose(ctx) : undefined
  const { session, dpop, timeoutMs } = await buildSession(ctx, values, { command: 'token', ephemeralDpop: false, requireIssuer: true, ...(verbose ? { interceptors: [verbose.interceptor] } : {}) })
  verbose?.watch(session, { jkt: dpop?.jkt, certificate: values.cert !== undefined })
  try {
    const signal = AbortSignal.timeout(timeoutMs)
    let t
    try {
      t = await session.token({ signal })
    } catch (err) {
      if (signal.aborted) throw new CliError('ERR_TIMEOUT', `no token within ${timeoutMs / 1000} s (--timeout)`)
      throw err
    }
    if (values.json) {
      const out = {
        access_token: t.value,
        token_type: t.type,
        expires_at: Math.floor(t.expiresAt / 1000),
        scope: t.scope ?? null,
        ...(t.binding.jkt !== undefined ? { jkt: t.binding.jkt } : {}),
        ...(t.binding.x5t !== undefined ? { x5t: t.binding.x5t } : {}),
      }
      ctx.stdout.write(`${JSON.stringify(out)}\n`)
    } else {
      ctx.stdout.write(`${t.value}\n`)
    }
    return 0
  } finally {
    await closeWithin(session)
  }
}
