import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto'
import { inspect } from 'node:util'
import { BoundError } from '@bound/core'
import type { Pem } from './client-certificate.js'

/**
 * One generation of a client certificate: the leaf (plus chain) and its private key, parsed and
 * checked to belong together. The key material is not enumerable and never printed.
 *
 * @example
 * ```ts
 * const { x5t, subject, spiffeId, notAfter }: ClientIdentity = certificate.current()
 * ```
 */
export interface ClientIdentity {
  /** RFC 8705 `x5t#S256`: base64url SHA-256 of the leaf's DER — the `cnf` of tokens bound to it. */
  readonly x5t: string
  /** The leaf's subject DN, as Node prints it. */
  readonly subject: string
  /** The leaf's issuer DN. */
  readonly issuer: string
  /** The SPIFFE ID from a `spiffe://` URI SAN, when there is one. */
  readonly spiffeId: string | undefined
  /** Epoch ms the certificate becomes valid. */
  readonly notBefore: number
  /** Epoch ms the certificate expires. */
  readonly notAfter: number
  /** 1 for the first certificate a source loaded, then +1 per rotation. */
  readonly generation: number
  /** The chain as PEM, leaf first (what goes in the TLS handshake). Not enumerable. */
  readonly certPem: string
  /** The private key. Not enumerable. */
  readonly privateKey: KeyObject
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * base64url(SHA-256(DER)): the `x5t#S256` of a certificate (RFC 8705 §3.1).
 *
 * @example
 * ```ts
 * const x5t = certificateThumbprint(readFileSync('client.pem', 'utf8')) // compare with a token's cnf["x5t#S256"]
 * ```
 */
export function certificateThumbprint(cert: X509Certificate | Buffer | string): string {
  const der = cert instanceof X509Certificate ? cert.raw : typeof cert === 'string' ? new X509Certificate(cert).raw : cert
  return createHash('sha256').update(der).digest('base64url')
}

/**
 * The `spiffe://` URI SAN of a certificate, if any.
 *
 * @example
 * ```ts
 * spiffeIdOf(new X509Certificate(pem)) // 'spiffe://example.org/ns/default/sa/orders-worker'
 * ```
 */
export function spiffeIdOf(cert: X509Certificate): string | undefined {
  const san = cert.subjectAltName ?? ''
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith('URI:spiffe://')) return part.slice(4)
  }
  return undefined
}

/**
 * Parses a certificate chain and its private key into a {@link ClientIdentity}: finds the leaf (the
 * certificate whose public key matches the key, wherever it stands in the file), puts it first,
 * and refuses a key that matches no certificate (`ERR_MTLS_CERTIFICATE_INVALID`).
 *
 * @example
 * ```ts
 * const identity = parseClientIdentity({ cert: readFileSync('chain.pem'), key: readFileSync('key.pem') }, 1)
 * ```
 */
export function parseClientIdentity(input: { cert: Pem; key: Pem; passphrase?: string | undefined }, generation: number): ClientIdentity {
  const certText = Buffer.isBuffer(input.cert) ? input.cert.toString('utf8') : input.cert
  const blocks = certText.match(PEM_BLOCK) ?? []
  if (blocks.length === 0) throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', 'The client certificate file holds no PEM certificate')
  let certs: X509Certificate[]
  try {
    certs = blocks.map((b) => new X509Certificate(b))
  } catch (err) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', 'The client certificate could not be parsed', { cause: err instanceof Error ? new Error(err.message) : undefined })
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({ key: input.key, ...(input.passphrase !== undefined ? { passphrase: input.passphrase } : {}) })
  } catch (err) {
    const code = (err as { code?: string }).code
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', `The client certificate's private key could not be read${code ? ` (${code})` : ''}`)
  }
  const leafIndex = certs.findIndex((c) => c.checkPrivateKey(privateKey))
  if (leafIndex < 0) throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', 'The private key does not match the client certificate (nor any certificate in its chain)')
  const leaf = certs[leafIndex]!
  const ordered = [blocks[leafIndex]!, ...blocks.filter((_, i) => i !== leafIndex)]
  const identity = {
    x5t: certificateThumbprint(leaf),
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    spiffeId: spiffeIdOf(leaf),
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    generation,
  }
  Object.defineProperty(identity, 'certPem', { value: `${ordered.join('\n')}\n`, enumerable: false })
  Object.defineProperty(identity, 'privateKey', { value: privateKey, enumerable: false })
  Object.defineProperty(identity, inspect.custom, { value: () => `ClientIdentity { x5t: ${identity.x5t}, subject: ${identity.subject}, generation: ${generation} }`, enumerable: false })
  return Object.freeze(identity) as ClientIdentity
}

/**
 * Throws `ERR_MTLS_CERTIFICATE_EXPIRED` when `identity` is not valid at `now`.
 *
 * @example
 * ```ts
 * assertCertificateValid(certificate.current(), Date.now())
 * ```
 */
export function assertCertificateValid(identity: ClientIdentity, now: number): void {
  if (now >= identity.notAfter) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_EXPIRED', `The client certificate (${identity.subject}, x5t#S256 ${identity.x5t}) expired at ${new Date(identity.notAfter).toISOString()}; refusing to present it`)
  }
  if (now < identity.notBefore) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_EXPIRED', `The client certificate (${identity.subject}) is not valid before ${new Date(identity.notBefore).toISOString()}`)
  }
}
