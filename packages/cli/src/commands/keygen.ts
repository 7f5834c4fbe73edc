import { generateKeyPair, randomBytes, type KeyObject } from 'node:crypto'
import { chmod, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { DPOP_ALGS, importDpopKey, type DpopAlg } from '@bound/dpop'
import { parseCommand } from '../args.js'
import { CliError, usage } from '../errors.js'
import { writeAll, type Context } from '../io.js'

const generate = promisify(generateKeyPair) as unknown as (type: string, options: object) => Promise<{ privateKey: KeyObject; publicKey: KeyObject }>

/**
 * Generates an exportable private key for `alg` with node:crypto. (The SDK's `generateDpopKey`
 * makes non-extractable keys on purpose; a key that is written to a file has to be exportable.)
 * PS256 uses a plain RSA key, which signs RSASSA-PSS as well and exports as a JWK.
 */
async function exportableKey(alg: DpopAlg): Promise<KeyObject> {
  switch (alg) {
    case 'ES256':
      return (await generate('ec', { namedCurve: 'P-256' })).privateKey
    case 'ES384':
      return (await generate('ec', { namedCurve: 'P-384' })).privateKey
    case 'EdDSA':
      return (await generate('ed25519', {})).privateKey
    case 'PS256':
    case 'RS256':
      return (await generate('rsa', { modulusLength: 2048 })).privateKey
  }
}

/** Writes `data` to `file` with mode 0600: exclusively (`wx`), or with `force` through a temporary file renamed over it. */
async function writePrivate(file: string, data: string, force: boolean, shown: string): Promise<void> {
  const target = force ? join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`) : file
  let handle
  try {
    handle = await open(target, 'wx', 0o600)
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code === 'EEXIST' && !force) throw new CliError('ERR_FILE_EXISTS', `${shown} already exists; refusing to overwrite a key (use --force to replace it)`)
    throw new CliError('ERR_FILE', `cannot create ${force ? `a temporary file next to ${shown}` : shown} (${typeof code === 'string' ? code : 'error'})`)
  }
  try {
    await handle.chmod(0o600) // whatever the umask
    await handle.writeFile(data, 'utf8')
    await handle.sync()
  } finally {
    await handle.close()
  }
  if (force) {
    try {
      await rename(target, file)
      await chmod(file, 0o600)
    } catch (err) {
      await rm(target, { force: true })
      const code = (err as { code?: unknown }).code
      throw new CliError('ERR_FILE', `cannot replace ${shown} (${typeof code === 'string' ? code : 'error'})`)
    }
  }
}

/** `bound keygen`: a DPoP key written as a private JWK (mode 0600); prints its `jkt`. `--out -` prints the JWK instead. */
export async function keygen(args: readonly string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseCommand('keygen', args, {
    alg: { type: 'string' },
    out: { type: 'string', short: 'o' },
    force: { type: 'boolean', short: 'f' },
    json: { type: 'boolean' },
  })
  if (positionals.length > 0) throw usage('keygen takes no arguments (use --out FILE to name the key file)')
  const alg = (values.alg ?? 'ES256') as DpopAlg
  if (!DPOP_ALGS.includes(alg)) throw usage(`--alg must be one of ${DPOP_ALGS.join(', ')} (got ${JSON.stringify(String(values.alg).slice(0, 20))})`)
  const shown = values.out ?? 'dpop-key.jwk'
  if (shown === '') throw usage('--out is empty')
  const toStdout = shown === '-'
  if (toStdout && values.json) throw usage('--json does not go with --out -: standard output carries the key itself (its kid is the jkt)')

  const privateKey = await exportableKey(alg)
  const jwk = privateKey.export({ format: 'jwk' })
  // the SDK checks the key can sign `alg`, and computes the RFC 7638 thumbprint
  const key = await importDpopKey({ ...jwk, alg }, { alg })
  const stored = { ...jwk, alg, use: 'sig', kid: key.jkt }
  const text = `${JSON.stringify(stored, null, 2)}\n`
  if (toStdout) {
    // `--out -`: the private JWK itself on stdout (for a secret store or a pipe), nothing else
    await writeAll(ctx.stdout, text)
    return 0
  }
  const file = ctx.path(shown)
  await writePrivate(file, text, values.force ?? false, shown)

  ctx.stdout.write(values.json ? `${JSON.stringify({ jkt: key.jkt, alg, file })}\n` : `${key.jkt}\n`)
  return 0
}
