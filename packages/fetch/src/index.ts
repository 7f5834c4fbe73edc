/**
 * `@bound/fetch`: a drop-in `fetch` (and an undici interceptor) that sends every request to the
 * configured origins with a DPoP- or certificate-bound token, and answers the servers' challenges.
 * Re-exports everything an application needs from `@bound/oauth`, `@bound/dpop`, `@bound/mtls`,
 * `@bound/http` and `@bound/core` — sessions, grants, client authentication, keys, certificates,
 * the transport and the errors — so one import serves it.
 *
 * @packageDocumentation
 * @module @bound/fetch
 */
export { createBoundFetch } from './bound-fetch.js'
export type { BoundFetch, BoundFetchOptions } from './bound-fetch.js'
export { boundInterceptor } from './interceptor.js'
export { cibaStepUp } from './ciba.js'
export type { CibaStepUpOptions } from './ciba.js'
export { FetchNetworkError } from './network-error.js'
export type { BoundOptions, StepUpChallenge, StepUpResult } from './engine.js'
export { getChallenges, mergeClaims } from './challenges.js'
export type { ResponseChallenge } from './challenges.js'
// Everything an application needs to build a session and make bound requests, so one import
// serves it. The building blocks (discovery, the proof builder, the nonce store, the token endpoint
// client, certificate parsing) stay in their own packages.
export { BoundError, isBoundError, TokenEndpointError, IdentityProviderError } from '@bound/core'
export type { BoundErrorCode, ClassifiedChallenge, ChallengeKind } from '@bound/core'
export { createSession, clientCredentials, refreshToken, tokenExchange, jwtBearer, identityAssertionGrant, TOKEN_TYPES, fromFile, fromEnv, fromGitHubActions, clientSecretBasic, clientSecretPost, privateKeyJwt, tlsClientAuth, selfSignedTlsClientAuth, noClientAuth, attestationClientAuth, instrumentSession, createSessionPool, createMemoryTokenStore } from '@bound/oauth'
export type { Session, SessionOptions, SessionEvents, TokenRequest, StepUpApproval, PostureAnswer, BoundToken, TokenBinding, ClientCredentialsOptions, TokenExchangeOptions, JwtBearerOptions, IdentityAssertionGrantOptions, IdentityProviderOptions, RefreshTokenGrantOptions, TokenSource, ClientAuth, PrivateKeyJwtOptions, AttestationClientAuthOptions, RefreshOptions, BackoffOptions, Logger, TelemetryOptions, SessionPool, SessionPoolOptions, TokenStore, StoredRecord, SharedStoreOptions, StoreEncryptionKey } from '@bound/oauth'
export { generateDpopKey, importDpopKey, loadOrCreateDpopKey, fromSigner } from '@bound/dpop'
export type { DpopKey, DpopAlg, JwsSigner, DpopKeyInput, GenerateDpopKeyOptions } from '@bound/dpop'
export { loadClientCertificate } from '@bound/mtls'
export type { ClientCertificate, ClientCertificatePem, LoadClientCertificateOptions, Pem } from '@bound/mtls'
export { createTransport } from '@bound/http'
export type { Transport, TransportOptions, ProxySetting, ProxyOptions, Interceptor } from '@bound/http'
