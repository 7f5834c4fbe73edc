/**
 * `@bound/testkit`: real servers on 127.0.0.1 for testing DPoP-bound (RFC 9449) and
 * certificate-bound (RFC 8705) access tokens. For tests only, never for production.
 *
 * @packageDocumentation
 * @module @bound/testkit
 */
export { startTestkit } from './testkit.js'
export type { Testkit, TestkitOptions, IdentityProvider } from './testkit.js'
export { TOKEN_TYPE_ID_JAG, ID_JAG_TYP } from './identity-assertion.js'
export type { IdJagApp, IdJagIssuerControl, IdTokenOptions, IssuedIdJag, TrustedIdJagIssuer } from './identity-assertion.js'

export { createTestPki, certificateThumbprint } from './pki.js'
export type { ClientCertificateOptions, TestCertificate, TestPki, TestPkiOptions } from './pki.js'

export { startAuthorizationServer, DEFAULT_SCOPE, DPOP_SIGNING_ALGS } from './authorization-server.js'
export type {
  AttestedClient,
  AuthorizationServer,
  AuthorizationServerCounters,
  AuthorizationServerOptions,
  MtlsClient,
  PrivateKeyJwtClient,
  PublicClient,
  ResourceRegistration,
  SecretClient,
  TestClients,
} from './authorization-server.js'

export {
  GRANT_TYPE_JWT_BEARER,
  GRANT_TYPE_TOKEN_EXCHANGE,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_ID_TOKEN,
  TOKEN_TYPE_JWT,
} from './grants.js'
export type { AccessTokenRevocation, RevocationReason } from './grants.js'
export type { TokenEndpointFault, TokenEndpointFaultOptions } from './token-endpoint-faults.js'
export type { AuthorizationServerQuirks, ResourceServerQuirks } from './quirks.js'

export { GRANT_TYPE_CIBA } from './ciba.js'
export type { CibaApproval, CibaControl, CibaDenial, CibaRequest, CibaRequestStatus } from './ciba.js'

export {
  ATTEST_JWT_CLIENT_AUTH,
  ATTEST_JWT_CLIENT_AUTH_DPOP,
  ATTESTATION_POP_MAX_AGE_SECONDS,
  CLIENT_ATTESTATION_POP_TYP,
  CLIENT_ATTESTATION_TYP,
  createClientAttester,
  DEFAULT_ATTESTER_ISSUER,
} from './client-attestation.js'
export type { ClientAttestationOptions, ClientAttester, ClientAttesterOptions } from './client-attestation.js'

export {
  createWorkloadIdentityIssuer,
  DEFAULT_WORKLOAD_ISSUER,
  DEFAULT_WORKLOAD_SUBJECT,
} from './workload-identity.js'
export type {
  WorkloadIdentityIssuer,
  WorkloadIdentityIssuerOptions,
  WorkloadTokenOptions,
} from './workload-identity.js'

export { startResourceServer } from './resource-server.js'
export type {
  ResourceServer,
  ResourceServerOptions,
  RouteHandler,
  VerifiedAuth,
  VerifiedRequest,
} from './resource-server.js'

export type {
  Binding,
  ClaimsRequest,
  ResourceServerControl,
  ResourceServerCounters,
  SeenRequest,
  StepUpRequirement,
} from './control.js'
export type { DecodedProof } from './dpop-proof-check.js'
export { TESTKIT_SECRET_CHANNEL, announceSecret } from './secrets.js'
