import {
  startAuthorizationServer,
  DEFAULT_SCOPE,
  type AuthorizationServer,
  type TestClients,
} from './authorization-server.js'
import { createTestPki, type TestPki } from './pki.js'
import { startResourceServer, type ResourceServer } from './resource-server.js'
import type { WorkloadIdentityIssuer } from './workload-identity.js'
import type { CibaControl } from './ciba.js'
import type { ClientAttester } from './client-attestation.js'
import type { AuthorizationServerQuirks, ResourceServerQuirks } from './quirks.js'
import type { IdJagApp, IdJagIssuerControl, IdTokenOptions, IssuedIdJag } from './identity-assertion.js'

/**
 * Options of {@link startTestkit}.
 *
 * @example
 * ```ts
 * const kit = await startTestkit({ accessTokenTtlSeconds: 4, rsRequiresNonce: false, verbose: true })
 * ```
 */
export interface TestkitOptions {
  /** Access token lifetime in seconds; default 300. */
  accessTokenTtlSeconds?: number
  /** Refresh token (family) lifetime in seconds for the token exchange and JWT bearer grants; default 86400. */
  refreshTokenTtlSeconds?: number
  /** The authorization server demands DPoP nonces (`use_dpop_nonce`); default true. */
  asRequiresNonce?: boolean
  /** The resource server demands DPoP nonces; default true. */
  rsRequiresNonce?: boolean
  /** The RS also accepts the nonce from before its last rotation (a grace window); default false. */
  rsAcceptsPreviousNonce?: boolean
  /** Accept unbound Bearer tokens at the resource server; default false. */
  allowUnboundBearer?: boolean
  /** Log authorization server error details and resource server rejections to stderr; default false. */
  verbose?: boolean
  /** The `interval` (seconds) of CIBA backchannel authentication responses; default 1. */
  cibaIntervalSeconds?: number
  /** Vendor quirks of the authorization server (e.g. `{ audienceParameter: true }`); default none. */
  asQuirks?: AuthorizationServerQuirks
  /** Vendor quirks of the resource server (e.g. `{ errorlessChallenges: true }`); default none. */
  rsQuirks?: ResourceServerQuirks
  /** The resource server speaks HTTP/2 as well as HTTP/1.1 (ALPN); default false (HTTP/1.1 only). */
  rsHttp2?: boolean
  /**
   * Start an enterprise identity provider too (`kit.idp`): a second authorization server that
   * issues ID-JAGs by token exchange, trusted by the first one's JWT bearer grant (see
   * {@link IdentityProvider}). `true`, or `{ idJagTtlSeconds (default 300), idJagSingleUse
   * (default true: the AS takes each ID-JAG once, as the MCP profile requires) }`. Default none.
   */
  idp?: boolean | { idJagTtlSeconds?: number; idJagSingleUse?: boolean }
}

/**
 * The testkit's enterprise identity provider (`startTestkit({ idp: true })`): an oidc-provider
 * authorization server of its own that signs users' ID tokens and, by RFC 8693 token exchange,
 * Identity Assertion JWT Authorization Grants (ID-JAGs) for the apps it allows; the testkit's
 * authorization server accepts them with the JWT bearer grant (verified against this IdP's JWKS).
 *
 * The agent is known here under its own registrations (`clients`, the IdP's): the app allowed at
 * start is `clients.secretPost` at the IdP acting as `kit.clients.secretBasic` at `kit.issuer`.
 *
 * @example
 * ```ts
 * const kit = await startTestkit({ idp: true })
 * const idp: IdentityProvider = kit.idp!
 * const idToken = await idp.mintIdToken({ sub: 'alice@acme.example' })
 * idp.refuseApp(idp.clients.secretPost.clientId) // the IdP answers access_denied from now on
 * ```
 */
export interface IdentityProvider extends IdJagIssuerControl {
  /** The authorization server underneath (endpoints, counters, faults, stop/start). */
  as: AuthorizationServer
  /** Its issuer identifier (`https://127.0.0.1:PORT`). */
  issuer: string
  tokenEndpoint: string
  revocationEndpoint: string
  jwksUri: string
  /** The agent's registrations at the IdP (client ids and methods of its own). */
  clients: TestClients
}

/**
 * A running authorization server, resource server and PKI.
 *
 * @example
 * ```ts
 * const kit: Testkit = await startTestkit()
 * createSession({ issuer: kit.issuer, clientId: kit.clients.secretBasic.clientId, clientAuth: clientSecretBasic(kit.clients.secretBasic.clientSecret), grant: clientCredentials({ resource: kit.resource }), ca: kit.ca })
 * await kit.close()
 * ```
 */
export interface Testkit {
  pki: TestPki
  as: AuthorizationServer
  rs: ResourceServer
  /** The authorization server issuer, `https://127.0.0.1:PORT`. */
  issuer: string
  /** Base URL of the resource server API (its origin). */
  api: string
  /** The resource indicator / audience of the resource server. */
  resource: string
  /** The test CA certificate (PEM); trust it to talk to both servers. */
  ca: string
  /** The registered clients and their credentials. */
  clients: TestClients
  /** The enterprise identity provider, when started with `idp` (see {@link IdentityProvider}). */
  idp?: IdentityProvider
  /**
   * The simulated workload identity issuer (Kubernetes service account / GitHub Actions OIDC
   * style) whose tokens the AS accepts as RFC 8693 `subject_token` and RFC 7523 `assertion`.
   * `mintToken()` defaults: `aud` = the AS issuer, `sub` = `system:serviceaccount:ci:deployer`.
   */
  workloadIdentity: WorkloadIdentityIssuer
  /**
   * CIBA (poll mode) approval hooks, the same object as `as.ciba`: approve, deny or expire the
   * backchannel authentication requests the AS received (`kit.clients.ciba` may make them).
   */
  ciba: CibaControl
  /**
   * The Client Attester the AS trusts (same as `as.attester`): `issue({ clientId, cnfJwk })` signs
   * the `OAuth-Client-Attestation` of `kit.clients.attested` / `attestedDpop`.
   */
  attester: ClientAttester
  /** Closes both servers and removes the PKI folder. Idempotent. */
  close(): Promise<void>
}

/**
 * Starts a test PKI, an oidc-provider authorization server and a verifying resource server, all
 * on 127.0.0.1 with ephemeral ports.
 *
 * For tests only: never use any part of the testkit in production.
 *
 * @example
 * ```ts
 * const kit = await startTestkit()
 * try {
 *   // request a token from kit.issuer as kit.clients.secretBasic, call kit.api
 * } finally {
 *   await kit.close()
 * }
 * ```
 */
// (a record over keyof TestkitOptions: the compiler keeps it complete when an option is added)
const KNOWN_OPTIONS: Record<keyof TestkitOptions, true> = { accessTokenTtlSeconds: true, refreshTokenTtlSeconds: true, asRequiresNonce: true, rsRequiresNonce: true, rsAcceptsPreviousNonce: true, allowUnboundBearer: true, verbose: true, cibaIntervalSeconds: true, asQuirks: true, rsQuirks: true, rsHttp2: true, idp: true }
const TESTKIT_OPTIONS = Object.keys(KNOWN_OPTIONS)

export async function startTestkit(options: TestkitOptions = {}): Promise<Testkit> {
  // (the testkit's lifetimes are protocol lifetimes in whole seconds, named …Seconds)
  for (const key of Object.keys(options)) {
    if (!TESTKIT_OPTIONS.includes(key)) throw new TypeError(`startTestkit: unknown option ${key}${TESTKIT_OPTIONS.includes(`${key}Seconds`) ? ` — did you mean ${key}Seconds?` : ''}`)
  }
  const verbose = options.verbose ?? false
  const pki = await createTestPki()
  let as: AuthorizationServer | undefined
  let rs: ResourceServer | undefined
  let idpAs: AuthorizationServer | undefined
  const idpOptions = options.idp === true ? {} : options.idp === false ? undefined : options.idp
  try {
    if (idpOptions !== undefined) {
      idpAs = await startAuthorizationServer({
        pki,
        identityProvider: idpOptions.idJagTtlSeconds === undefined ? {} : { idJagTtlSeconds: idpOptions.idJagTtlSeconds },
        requireNonce: options.asRequiresNonce ?? true,
        verbose,
      })
    }
    const issuingIdp = idpAs
    as = await startAuthorizationServer({
      pki,
      ...(issuingIdp === undefined ? {} : { idJagIssuers: [{ issuer: issuingIdp.issuer, jwksUri: issuingIdp.jwksUri, revoked: (jti: string) => issuingIdp.idJagIssuer?.isRevoked(jti) === true }] }),
      ...(options.accessTokenTtlSeconds === undefined ? {} : { accessTokenTtlSeconds: options.accessTokenTtlSeconds }),
      ...(options.refreshTokenTtlSeconds === undefined ? {} : { refreshTokenTtlSeconds: options.refreshTokenTtlSeconds }),
      requireNonce: options.asRequiresNonce ?? true,
      ...(options.cibaIntervalSeconds === undefined ? {} : { cibaIntervalSeconds: options.cibaIntervalSeconds }),
      ...(options.asQuirks === undefined ? {} : { quirks: options.asQuirks }),
      verbose,
    })
    rs = await startResourceServer({
      pki,
      issuer: as.issuer,
      jwksUri: as.jwksUri,
      requireNonce: options.rsRequiresNonce ?? true,
      acceptPreviousNonce: options.rsAcceptsPreviousNonce ?? false,
      allowUnboundBearer: options.allowUnboundBearer ?? false,
      ...(options.rsQuirks === undefined ? {} : { quirks: options.rsQuirks }),
      ...(options.rsHttp2 === undefined ? {} : { http2: options.rsHttp2 }),
      verbose,
    })
    as.addResource({ resource: rs.resource, scope: DEFAULT_SCOPE })
    if (idpAs !== undefined) {
      as.setIdJagSingleUse(idpOptions?.idJagSingleUse ?? true)
      idpAs.idJagIssuer?.allowApp({ clientId: idpAs.clients.secretPost.clientId, audience: as.issuer, clientIdAtAudience: as.clients.secretBasic.clientId })
    }
    // Warm the key cache so the resource server keeps verifying through an AS outage.
    await rs.refreshJwks()
  } catch (error) {
    await rs?.close()
    await as?.close()
    await idpAs?.close()
    await pki.remove()
    throw error
  }

  const authorizationServer = as
  const resourceServer = rs
  const identityServer = idpAs
  // Revocation bridge: JWT access tokens revoked at the AS (revocation endpoint, refresh token
  // family revoked or reused) are rejected by the RS from then on.
  const unsubscribe = authorizationServer.onAccessTokenRevoked(({ jti }) => resourceServer.revokeJti(jti))
  let closing: Promise<void> | undefined
  return {
    pki,
    as: authorizationServer,
    rs: resourceServer,
    issuer: authorizationServer.issuer,
    api: resourceServer.origin,
    resource: resourceServer.resource,
    ca: pki.caPem,
    clients: authorizationServer.clients,
    workloadIdentity: authorizationServer.workloadIdentity,
    ciba: authorizationServer.ciba,
    attester: authorizationServer.attester,
    ...(identityServer === undefined ? {} : { idp: identityProviderOf(identityServer) }),
    close() {
      closing ??= (async () => {
        unsubscribe()
        await Promise.allSettled([resourceServer.close(), authorizationServer.close(), ...(identityServer ? [identityServer.close()] : [])])
        await pki.remove()
      })()
      return closing
    },
  }
}

/** The IdP view of an authorization server started with `identityProvider`. */
function identityProviderOf(as: AuthorizationServer): IdentityProvider {
  const control = as.idJagIssuer
  if (control === undefined) throw new Error('the authorization server was not started as an identity provider')
  return {
    as,
    issuer: as.issuer,
    tokenEndpoint: as.tokenEndpoint,
    revocationEndpoint: as.revocationEndpoint,
    jwksUri: as.jwksUri,
    clients: as.clients,
    allowApp: (app: IdJagApp) => control.allowApp(app),
    refuseApp: (clientId: string) => control.refuseApp(clientId),
    stopIssuing: () => control.stopIssuing(),
    resumeIssuing: () => control.resumeIssuing(),
    setIdJagTtlSeconds: (seconds: number) => control.setIdJagTtlSeconds(seconds),
    issued: (): IssuedIdJag[] => control.issued(),
    isRevoked: (jti: string) => control.isRevoked(jti),
    mintIdToken: (options?: IdTokenOptions) => control.mintIdToken(options),
    get defaultApp() {
      return control.defaultApp
    },
  }
}
