import { X509Certificate } from 'node:crypto'
import { BoundError } from '@bound/core'
import { certificateThumbprint, spiffeIdOf } from '@bound/mtls'
import { parseCommand } from '../args.js'
import { EXIT_CODES, usage } from '../errors.js'
import { scrub, type Context } from '../io.js'

const FIRST_PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/

/**
 * `bound thumbprint <cert>`: the RFC 8705 `x5t#S256` of a certificate (the first of a PEM chain), its
 * SPIFFE ID, subject and validity. Exit code 3 when it is expired or not yet valid (unless
 * `--allow-expired`).
 */
export async function thumbprint(args: readonly string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseCommand('thumbprint', args, { json: { type: 'boolean' }, 'allow-expired': { type: 'boolean' } })
  if (positionals.length !== 1) throw usage('thumbprint takes exactly one argument: the certificate file (PEM or DER), or - for standard input')
  const path = positionals[0]!
  const bytes = await ctx.readFile(path, 'certificate')
  const pem = bytes.toString('latin1').match(FIRST_PEM)?.[0]
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem ?? bytes)
  } catch {
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', `${path === '-' ? 'standard input' : path} holds no readable X.509 certificate (PEM or DER)`)
  }
  const notBefore = new Date(cert.validFrom)
  const notAfter = new Date(cert.validTo)
  const now = Date.now()
  const info = {
    'x5t#S256': certificateThumbprint(cert),
    spiffeId: spiffeIdOf(cert) ?? null,
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
    expired: now >= notAfter.getTime(),
    notYetValid: now < notBefore.getTime(),
  }
  if (values.json) {
    ctx.stdout.write(`${JSON.stringify(info)}\n`)
  } else {
    const lines = [
      ['x5t#S256', info['x5t#S256']],
      ...(info.spiffeId ? [['spiffe-id', info.spiffeId]] : []),
      ['subject', info.subject],
      ...(info.notYetValid ? [['not-before', `${info.notBefore} (not yet valid)`]] : []),
      ['not-after', `${info.notAfter}${info.expired ? ' (expired)' : ''}`],
    ]
    ctx.stdout.write(lines.map(([k, v]) => `${k!.padEnd(10)} ${v}\n`).join(''))
  }
  // A script that checks a certificate before using it learns from the exit code alone; the
  // details above are printed either way (e.g. the thumbprint of an old certificate to revoke).
  if ((info.expired || info.notYetValid) && !values['allow-expired']) {
    const what = info.expired ? `expired at ${info.notAfter}` : `is not valid before ${info.notBefore}`
    ctx.stderr.write(`bound: ERR_MTLS_CERTIFICATE_EXPIRED: ${scrub(`the certificate ${path === '-' ? 'on standard input' : path} ${what} (exit code 3; --allow-expired exits 0)`, ctx.secrets)}\n`)
    return EXIT_CODES.certificateExpired
  }
  return EXIT_CODES.ok
}
