/**
 * `@bound/dpop`: DPoP (RFC 9449) keys — generated, imported, persisted, or any external signer —
 * their RFC 7638 thumbprint (`jkt`), proofs, and a per-origin nonce store.
 *
 * @packageDocumentation
 * @module @bound/dpop
 */
export { generateDpopKey, importDpopKey, loadOrCreateDpopKey, fromSigner, jwkThumbprint, toPublicJwk, isPublicOnlyJwk, DPOP_ALGS } from './keys.js'
export type { DpopAlg, DpopKey, JwsSigner, DpopSigner, DpopKeyInput, DpopKeyPersistence, GenerateDpopKeyOptions, PublicJwk } from './keys.js'
export { createProofBuilder, accessTokenHash } from './proof.js'
export type { ProofBuilder, ProofInput } from './proof.js'
export { createNonceStore, isValidNonce } from './nonce-store.js'
export type { NonceStore, NonceObservation } from './nonce-store.js'
export { normalizeHtu, originOf } from './htu.js'
export { createDpop } from './dpop.js'
export type { Dpop, DpopOptions, ProofOptions } from './dpop.js'
