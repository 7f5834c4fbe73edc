/**
 * `@bound/mtls`: client certificates from PEM files (followed through rotations), their RFC 8705
 * `x5t#S256` thumbprint and SPIFFE ID. The HTTP transport that presents them is `@bound/http`.
 *
 * @packageDocumentation
 * @module @bound/mtls
 */
export { loadClientCertificate, clientCertificateFromPem } from './client-certificate.js'
export type { ClientCertificate, ClientCertificateEvents, LoadClientCertificateOptions, ClientCertificatePem, Pem } from './client-certificate.js'
export { parseClientIdentity, certificateThumbprint, spiffeIdOf, assertCertificateValid } from './identity.js'
export type { ClientIdentity } from './identity.js'
