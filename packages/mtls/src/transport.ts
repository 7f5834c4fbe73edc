import { createSecureContext, rootCertificates } from 'node:tls'
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici'
import { BoundError } from '@bound/core'

/** PEM text or bytes. */
export type Pem = string | Buffer

/** A client certificate and its private key, in PEM. */
export interface ClientCertificatePem {
  /** The leaf certificate, optionally followed by intermediates. */
  cert: Pem
  /** The private key (PKCS#8, PKCS#1 or SEC1 PEM). */
  key: Pem
  /** Passphrase of an encrypted key. */
  passphrase?: string
}

/** Options of {@link createTransport}. */
export interface TransportOptions {
  /**
   * Extra trust anchors (PEM), e.g. an internal CA. Added to Node's bundled roots, not replacing
   * them. Server certificates are always verified; there is no switch to turn that off.
   */
  ca?: Pem | readonly Pem[]
  /** A client certificate presented in the TLS handshake (mTLS). */
  clientCertificate?: ClientCertificatePem
  /** Keep-alive timeout of pooled connections, in milliseconds. Default 4,000. */
  keepAliveTimeout?: number
  /** Connect timeout in milliseconds. Default 10,000. */
  connectTimeout?: number
  /** Largest response header section, in bytes. Default 65,536 (undici's default is 16 KiB). */
  maxHeaderSize?: number
}

/** The `fetch` signature Bound's transport exposes (undici's `fetch`, with its `Response`). */
export type TransportFetch = (input: string | URL, init?: Parameters<typeof undiciFetch>[1]) => Promise<Awaited<ReturnType<typeof undiciFetch>>>

/**
 * How Bound talks HTTP: undici's own `fetch` paired with undici `Agent`s from the same copy
 * (never a userland Agent handed to Node's global fetch), with the trust anchors and client
 * certificate given. The certificate goes only where `fetch` is used; `anonymousFetch` never
 * presents it. Key material lives in a TLS secure context made once, never in plain options.
 */
export interface Transport {
  /** undici's `fetch`, presenting the client certificate when one is configured. */
  readonly fetch: TransportFetch
  /** undici's `fetch` that never presents a client certificate (for origins that get no credentials). */
  readonly anonymousFetch: TransportFetch
  /** The dispatcher behind `fetch`. */
  readonly dispatcher: Dispatcher
  /** Whether a client certificate is configured. */
  readonly hasClientCertificate: boolean
  /** Closes pooled connections. Further requests fail with `ERR_CLOSED`. */
  close(): Promise<void>
}

const toList = (ca: Pem | readonly Pem[] | undefined): Pem[] => (ca === undefined ? [] : Array.isArray(ca) ? [...(ca as readonly Pem[])] : [ca as Pem])

/**
 * Creates a {@link Transport}.
 *
 * @example
 * ```ts
 * import { createTransport } from '@bound/mtls'
 * const transport = createTransport({ ca: readFileSync('/etc/pki/internal-ca.pem') })
 * const res = await transport.fetch('https://api.internal/health')
 * ```
 */
export function createTransport(options: TransportOptions = {}): Transport {
  const extra = toList(options.ca)
  const ca = extra.length > 0 ? [...rootCertificates, ...extra] : undefined
  const agentFor = (clientCertificate: ClientCertificatePem | undefined) => {
    let secureContext
    try {
      secureContext = createSecureContext({
        ...(ca ? { ca } : {}),
        ...(clientCertificate ? { cert: clientCertificate.cert, key: clientCertificate.key, ...(clientCertificate.passphrase !== undefined ? { passphrase: clientCertificate.passphrase } : {}) } : {}),
      })
    } catch (err) {
      const code = (err as { code?: string }).code
      throw new BoundError(clientCertificate ? 'ERR_MTLS_CERTIFICATE_INVALID' : 'ERR_INVALID_CONFIG', `The TLS ${clientCertificate ? 'client certificate or key' : 'trust anchors (ca)'} could not be loaded${code ? ` (${code})` : ''}`)
    }
    return new Agent({
      connect: { secureContext, rejectUnauthorized: true, timeout: options.connectTimeout ?? 10_000 },
      keepAliveTimeout: options.keepAliveTimeout ?? 4_000,
      maxHeaderSize: options.maxHeaderSize ?? 65_536,
    })
  }
  const agent = agentFor(options.clientCertificate)
  const anonymous = options.clientCertificate ? agentFor(undefined) : agent
  let closed = false
  const via = (dispatcher: Dispatcher): TransportFetch => (input, init) => {
    if (closed) return Promise.reject(new BoundError('ERR_CLOSED', 'The transport is closed'))
    return undiciFetch(input, { ...init, dispatcher })
  }
  const transport = {
    fetch: via(agent),
    anonymousFetch: via(anonymous),
    hasClientCertificate: options.clientCertificate !== undefined,
    async close() {
      if (closed) return
      closed = true
      await Promise.all([agent.close(), anonymous === agent ? undefined : anonymous.close()])
    },
  }
  // not enumerable: loggers walking the session do not descend into undici's internals
  Object.defineProperty(transport, 'dispatcher', { value: agent, enumerable: false })
  return transport as Transport
}
