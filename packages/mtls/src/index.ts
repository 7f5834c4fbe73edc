/**
 * `@bound/mtls`: client certificates from PEM files (followed through rotations), their RFC 8705
 * `x5t#S256` thumbprint and SPIFFE ID, and the undici-based HTTP transport every Bound session uses.
 *
 * @packageDocumentation
 * @module @bound/mtls
 */
export { createTransport } from './transport.js'
export type { Transport, TransportOptions, TransportFetch, TransportRequestOptions, ClientCertificatePem, Pem } from './transport.js'
export { loadClientCertificate, clientCertificateFromPem } from './client-certificate.js'
export type { ClientCertificate, ClientCertificateEvents, LoadClientCertificateOptions } from './client-certificate.js'
export { parseClientIdentity, certificateThumbprint, spiffeIdOf, assertCertificateValid } from './identity.js'
export type { ClientIdentity } from './identity.js'
