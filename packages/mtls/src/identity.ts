import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto'
import { inspect } from 'node:util'
import { BoundError } from '@bound/core'
import { AsnConvert } from '@peculiar/asn1-schema'
import { Certificate, ExtendedKeyUsage, SubjectAlternativeName, anyExtendedKeyUsage, id_ce_extKeyUsage, id_ce_subjectAltName, id_kp_clientAuth } from '@peculiar/asn1-x509'
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
 * The SPIFFE ID of a certificate: its URI SAN, when the certificate has exactly one URI SAN and it
 * is a `spiffe://` URI (an X.509-SVID has exactly one). Read from the ASN.1 structure, never from
 * Node's comma-joined `subjectAltName` text (a SAN value may itself contain commas or quotes).
 *
 * @example
 * ```ts
 * spiffeIdOf(new X509Certificate(pem)) // 'spiffe://example.org/ns/default/sa/orders-worker'
 * ```
 */
export function spiffeIdOf(cert: X509Certificate): string | undefined {
  const uris = extensionsOf(cert).uris
  return uris.length === 1 && uris[0]!.startsWith('spiffe://') ? uris[0] : undefined
}

/** The URI SANs and the extended key usages (undefined: no such extension) of a certificate, from its DER. */
function extensionsOf(cert: X509Certificate): { uris: string[]; extendedKeyUsages: string[] | undefined } {
  let parsed: Certificate
  try {
    parsed = AsnConvert.parse(cert.raw, Certificate)
  } catch (err) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', 'The client certificate could not be parsed (ASN.1)', { cause: err instanceof Error ? new Error(err.message) : undefined })
  }
  const extensions = parsed.tbsCertificate.extensions ?? []
  const san = extensions.find((e) => e.extnID === id_ce_subjectAltName)
  const eku = extensions.find((e) => e.extnID === id_ce_extKeyUsage)
  const uris = san ? AsnConvert.parse(san.extnValue.buffer, SubjectAlternativeName).flatMap((name) => (name.uniformResourceIdentifier === undefined ? [] : [name.uniformResourceIdentifier])) : []
  return { uris, extendedKeyUsages: eku ? [...AsnConvert.parse(eku.extnValue.buffer, ExtendedKeyUsage)] : undefined }
}

/** The chain leaf first, then each certificate's issuer in turn (by name); certificates that fit nowhere last, as given. */
function chainOrder(certs: X509Certificate[], leafIndex: number): number[] {
  const order = [leafIndex]
  const left = new Set(certs.keys())
  left.delete(leafIndex)
  for (let current = certs[leafIndex]!; left.size > 0; ) {
    if (current.issuer === current.subject) break // self-signed: the chain ends
    const next = [...left].find((i) => certs[i]!.subject === current.issuer)
    if (next === undefined) break
    order.push(next)
    left.delete(next)
    current = certs[next]!
  }
  return [...order, ...left]
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
  // RFC 5280 §4.2.1.12: a certificate whose extended key usage excludes clientAuth must not be
  // used to authenticate a client (the server would refuse it, or worse, accept it wrongly)
  const { uris, extendedKeyUsages } = extensionsOf(leaf)
  if (extendedKeyUsages !== undefined && !extendedKeyUsages.includes(id_kp_clientAuth) && !extendedKeyUsages.includes(anyExtendedKeyUsage)) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', `The client certificate (${leaf.subject.replace(/\n/g, ', ')}) is not for client authentication: its extended key usage lacks clientAuth (1.3.6.1.5.5.7.3.2)`)
  }
  // TLS sends the chain leaf first, each certificate followed by its issuer (RFC 8446 §4.4.2)
  const ordered = chainOrder(certs, leafIndex).map((i) => blocks[i]!)
  const identity = {
    x5t: certificateThumbprint(leaf),
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    spiffeId: uris.length === 1 && uris[0]!.startsWith('spiffe://') ? uris[0] : undefined,
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
