/**
 * `@bound/oauth`: discovery (RFC 8414, RFC 9728), client authentication, grants, the token
 * endpoint client, the token manager, and the session that earns, caches, refreshes and revokes
 * bound tokens.
 *
 * @packageDocumentation
 * @module @bound/oauth
 */
export { createSession } from './session.js'
export { createSessionPool } from './session-pool.js'
export type { SessionPool, SessionPoolOptions } from './session-pool.js'
export type { Session, SessionOptions, SessionEvents, TokenRequest, StepUpApproval } from './session.js'
export type { PostureAnswer } from './binding.js'
export { clientCredentials, refreshToken, tokenExchange, jwtBearer, ciba, TOKEN_TYPES } from './grants.js'
export type { ClientCredentialsOptions, Grant, GrantContext, GrantOptions, GrantTransport, RefreshTokenGrantOptions, TokenExchangeOptions, JwtBearerOptions } from './grants.js'
export { identityAssertionGrant } from './identity-assertion.js'
export type { IdentityAssertionGrantOptions, IdentityProviderOptions } from './identity-assertion.js'
export { fromFile, fromEnv, fromGitHubActions } from './subject-token.js'
export type { TokenSource } from './subject-token.js'
export { revokeToken } from './revocation.js'
export type { RevocationContext } from './revocation.js'
export { clientSecretBasic, clientSecretPost, privateKeyJwt, tlsClientAuth, selfSignedTlsClientAuth, noClientAuth, attestationClientAuth, formUrlEncode } from './client-auth.js'
export type { ClientAuth, ClientAuthContext, PrivateKeyJwtOptions, AttestationClientAuthOptions } from './client-auth.js'
export { discoverAuthorizationServer, discoveryUrls } from './discovery.js'
export type { AuthorizationServerMetadata, DiscoveryOptions } from './discovery.js'
export { requestTokenFromEndpoint, retryAfterSeconds, parseTokenResponse } from './token-endpoint.js'
export type { TokenResponse, TokenRequestContext, TokenEndpointResult } from './token-endpoint.js'
export { isTransient } from './token-manager.js'
export type { RefreshOptions, BackoffOptions } from './token-manager.js'
export type { BoundToken, TokenBinding } from './token.js'
export { createMemoryTokenStore } from './token-store.js'
export type { TokenStore, StoredRecord } from './token-store.js'
export type { SharedStoreOptions } from './fleet.js'
export type { StoreEncryptionKey } from './store-cipher.js'
export { fetchProtectedResourceMetadata, protectedResourceMetadataUrls } from './protected-resource.js'
export type { ProtectedResourceMetadata, ProtectedResourceDiscoveryOptions } from './protected-resource.js'
export { instrumentSession } from './telemetry.js'
export type { Logger, TelemetryOptions } from './telemetry.js'
