export { createTransport } from './transport.js'
export type { Transport, TransportOptions, TransportFetch, ClientCertificatePem, Pem } from './transport.js'
