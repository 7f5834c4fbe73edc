// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata
// polyfill before the library is evaluated. Keep this import first.
import 'reflect-metadata'
import { announceSecret } from './secrets.js'
import * as x509 from '@peculiar/x509'
import { createHash, KeyObject, webcrypto } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * A certificate and its private key, written to disk as PEM files.
 *
 * @example
 * ```ts
 * const { certFile, keyFile, x5tS256, spiffeId }: TestCertificate = kit.pki.workload
 * const certificate = await loadClientCertificate({ certFile, keyFile })
 * ```
 */
export interface TestCertificate {
  /** Absolute path of the PEM certificate. */
  certFile: string
  /** Absolute path of the PEM (PKCS#8) private key. */
  keyFile: string
  /** PEM certificate. */
  certPem: string
  /** PEM (PKCS#8) private key. */
  keyPem: string
  /** base64url(SHA-256(DER of the certificate)): the RFC 8705 `x5t#S256` value. */
  x5tS256: string
  /** SPIFFE ID carried as a URI SAN, when the certificate has one. */
  spiffeId?: string
  /** Subject DN in RFC 4514 form, e.g. `CN=orders-worker, O=Bound Test`. */
  subject: string
  /** Issuer DN in RFC 4514 form. */
  issuer: string
  /** Hexadecimal serial number. */
  serialNumber: string
  notBefore: Date
  notAfter: Date
}

/**
 * Options of {@link createTestPki}.
 *
 * @example
 * ```ts
 * const pki = await createTestPki({ trustDomain: 'example.org', parentDir: '/tmp' })
 * ```
 */
export interface TestPkiOptions {
  /** Folder to create the temporary PKI folder in; default `os.tmpdir()`. */
  parentDir?: string
  /** Trust domain used for the SPIFFE IDs; default `bound.test`. */
  trustDomain?: string
}

/**
 * Options of {@link TestPki.issueClientCertificate}.
 *
 * @example
 * ```ts
 * const shortLived = await pki.issueClientCertificate({ name: 'short', commonName: 'orders-worker', notAfter: new Date(Date.now() + 60_000) })
 * ```
 */
export interface ClientCertificateOptions {
  /** File name stem used for the PEM files, e.g. `tenant-a`. */
  name: string
  /** Common name of the subject; the subject is `CN=<cn>, O=Bound Test`. */
  commonName: string
  /** URI SAN, e.g. a SPIFFE ID. */
  uri?: string
  /** More subject alternative names, after `uri` (values with commas or quotes are fine: they are encoded, not joined). */
  subjectAltNames?: { type: 'url' | 'dns' | 'email' | 'ip'; value: string }[]
  /** Extended key usages (OIDs); `null` for none at all. Default `[clientAuth]`. */
  extendedKeyUsages?: string[] | null
  /** Validity start; default one hour ago. */
  notBefore?: Date
  /** Validity end; default one day from now. */
  notAfter?: Date
  /** Issue a self-signed certificate instead of one signed by the test CA. */
  selfSigned?: boolean
}

/**
 * A throw-away PKI for tests: a CA, a server certificate for 127.0.0.1 / localhost and a set of
 * client certificates, all as PEM files in a temporary folder.
 *
 * @example
 * ```ts
 * const pki: TestPki = await createTestPki()
 * const agent = new Agent({ connect: { ca: pki.caPem, cert: pki.workload.certPem, key: pki.workload.keyPem } })
 * await pki.remove()
 * ```
 */
export interface TestPki {
  /** The temporary folder holding every PEM file. */
  dir: string
  /** Path of the CA certificate PEM. */
  caFile: string
  /** CA certificate PEM: trust this to talk to the testkit servers. */
  caPem: string
  /** The CA itself (its key is test-only). */
  ca: TestCertificate
  /**
   * Server certificate for IP 127.0.0.1, DNS localhost and DNS `*.bound.test` (a name only a test
   * proxy resolves, so that requests through it are not loopback requests), signed by the CA.
   */
  server: TestCertificate
  /** Client certificate `CN=orders-worker`, URI SAN `spiffe://<td>/ns/default/sa/orders-worker`. */
  workload: TestCertificate
  /** Same subject and SPIFFE ID as {@link TestPki.workload}, with a different key: a rotation. */
  workloadRotated: TestCertificate
  /** A different identity, `CN=other-worker`. */
  other: TestCertificate
  /** A self-signed client certificate, for `self_signed_tls_client_auth`. */
  selfSigned: TestCertificate
  /** A CA-signed client certificate (`CN=orders-worker`) whose `notAfter` is in the past. */
  expired: TestCertificate
  /** Issues one more client certificate (written to {@link TestPki.dir}). */
  issueClientCertificate(options: ClientCertificateOptions): Promise<TestCertificate>
  /** Removes {@link TestPki.dir}. Idempotent. */
  remove(): Promise<void>
}

const ORGANIZATION = 'Bound Test'
const EC_PARAMS: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' }
const HOUR = 60 * 60 * 1000
const DAY = 24 * HOUR

interface KeyedCertificate {
  cert: x509.X509Certificate
  keys: webcrypto.CryptoKeyPair
}

interface IssueRequest {
  name: string
  subject: string
  notBefore: Date
  notAfter: Date
  extensions: x509.Extension[]
  issuer?: KeyedCertificate
}

const crypto = webcrypto

function randomSerial(): string {
  // Positive 16-byte serial: clear the top bit.
  const bytes = new Uint8Array(16)
  crypto.getRandomValues(bytes)
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x01
  return Buffer.from(bytes).toString('hex')
}

async function keyPemOf(keys: webcrypto.CryptoKeyPair): Promise<string> {
  return KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString()
}

/**
 * base64url(SHA-256(der)): the RFC 8705 `x5t#S256` thumbprint of a DER certificate.
 *
 * @example
 * ```ts
 * certificateThumbprint(new X509Certificate(pem).raw) // compare with cnf["x5t#S256"]
 * ```
 */
export function certificateThumbprint(der: Uint8Array | ArrayBuffer): string {
  const bytes = der instanceof ArrayBuffer ? new Uint8Array(der) : der
  return createHash('sha256').update(bytes).digest('base64url')
}

async function issue(dir: string, request: IssueRequest): Promise<KeyedCertificate & { record: TestCertificate }> {
  const keys = await crypto.subtle.generateKey(EC_PARAMS, true, ['sign', 'verify'])
  const extensions = [
    ...request.extensions,
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
  ]
  if (request.issuer) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(request.issuer.cert, false, crypto))
  }
  const common = {
    serialNumber: randomSerial(),
    notBefore: request.notBefore,
    notAfter: request.notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  }
  const cert = request.issuer
    ? await x509.X509CertificateGenerator.create({
      ...common,
      subject: request.subject,
      issuer: request.issuer.cert.subject,
      publicKey: keys.publicKey,
      signingKey: request.issuer.keys.privateKey,
    }, crypto)
    : await x509.X509CertificateGenerator.createSelfSigned({ ...common, name: request.subject, keys }, crypto)

  const certPem = cert.toString('pem') + '\n'
  const keyPem = await keyPemOf(keys)
  announceSecret(keyPem.split('\n')[1]) // a line of the key's base64: enough to recognise it anywhere
  const certFile = join(dir, `${request.name}.crt.pem`)
  const keyFile = join(dir, `${request.name}.key.pem`)
  await Promise.all([
    writeFile(certFile, certPem, { mode: 0o644 }),
    writeFile(keyFile, keyPem, { mode: 0o600 }),
  ])

  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const spiffeId = san?.names.items.find((name) => name.type === 'url' && name.value.startsWith('spiffe://'))?.value

  const record: TestCertificate = {
    certFile,
    keyFile,
    certPem,
    keyPem,
    x5tS256: certificateThumbprint(cert.rawData),
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    ...(spiffeId === undefined ? {} : { spiffeId }),
  }
  return { cert, keys, record }
}

function clientExtensions(uri: string | undefined, more: ClientCertificateOptions['subjectAltNames'] = [], usages: string[] | null = [x509.ExtendedKeyUsage.clientAuth]): x509.Extension[] {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  ]
  if (usages !== null) extensions.push(new x509.ExtendedKeyUsageExtension(usages))
  const names = [...(uri !== undefined ? [{ type: 'url' as const, value: uri }] : []), ...more]
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names))
  return extensions
}

/**
 * Creates a test PKI in a fresh temporary folder: an ECDSA P-256 CA, a server certificate for
 * `127.0.0.1` and `localhost`, client certificates `workload`, `workloadRotated` (same subject and
 * SPIFFE ID, new key), `other`, `selfSigned` and `expired`.
 *
 * For tests only: the CA key lives in a world-readable temp folder.
 *
 * @example
 * ```ts
 * const pki = await createTestPki()
 * try {
 *   const certificate = await loadClientCertificate({ certFile: pki.workload.certFile, keyFile: pki.workload.keyFile })
 * } finally {
 *   await pki.remove()
 * }
 * ```
 */
export async function createTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'bound-testkit-'))
  const trustDomain = options.trustDomain ?? 'bound.test'
  const workloadId = `spiffe://${trustDomain}/ns/default/sa/orders-worker`
  const now = Date.now()
  const notBefore = new Date(now - HOUR)
  const notAfter = new Date(now + DAY)

  try {
    const ca = await issue(dir, {
      name: 'ca',
      subject: `CN=Bound Test CA, O=${ORGANIZATION}`,
      notBefore,
      notAfter: new Date(now + 7 * DAY),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    })

    const issueClient = async (client: ClientCertificateOptions): Promise<TestCertificate> => {
      const issued = await issue(dir, {
        name: client.name,
        subject: `CN=${client.commonName}, O=${ORGANIZATION}`,
        notBefore: client.notBefore ?? notBefore,
        notAfter: client.notAfter ?? notAfter,
        extensions: clientExtensions(client.uri, client.subjectAltNames, client.extendedKeyUsages),
        ...(client.selfSigned === true ? {} : { issuer: ca }),
      })
      return issued.record
    }

    const [server, workload, workloadRotated, other, selfSigned, expired] = await Promise.all([
      issue(dir, {
        name: 'server',
        subject: `CN=127.0.0.1, O=${ORGANIZATION}`,
        notBefore,
        notAfter,
        issuer: ca,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([
            { type: 'ip', value: '127.0.0.1' },
            { type: 'dns', value: 'localhost' },
            // a name only a test proxy resolves (to 127.0.0.1): traffic for it is not loopback to the client
            { type: 'dns', value: '*.bound.test' },
          ]),
        ],
      }).then((issued) => issued.record),
      issueClient({ name: 'workload', commonName: 'orders-worker', uri: workloadId }),
      issueClient({ name: 'workload-rotated', commonName: 'orders-worker', uri: workloadId }),
      issueClient({ name: 'other', commonName: 'other-worker', uri: `spiffe://${trustDomain}/ns/default/sa/other-worker` }),
      issueClient({ name: 'self-signed', commonName: 'self-signed-worker', selfSigned: true }),
      issueClient({
        name: 'expired',
        commonName: 'orders-worker',
        uri: workloadId,
        notBefore: new Date(now - 2 * DAY),
        notAfter: new Date(now - DAY),
      }),
    ])

    let removed = false
    return {
      dir,
      caFile: ca.record.certFile,
      caPem: ca.record.certPem,
      ca: ca.record,
      server,
      workload,
      workloadRotated,
      other,
      selfSigned,
      expired,
      issueClientCertificate: issueClient,
      async remove() {
        if (removed) return
        removed = true
        await rm(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}
