import { KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, webcrypto, type JsonWebKey as NodeJwk } from 'node:crypto'
import { BoundError } from '@bound/core'
import { optionsChecker, z } from '@bound/core/internal'

/**
 * The JWS algorithms Bound signs DPoP proofs with.
 *
 * @example
 * ```ts
 * const alg: DpopAlg = 'EdDSA'
 * const key = await generateDpopKey({ alg })
 * ```
 */
export type DpopAlg = 'ES256' | 'ES384' | 'EdDSA' | 'PS256' | 'RS256'

/**
 * Every alg {@link generateDpopKey} and {@link importDpopKey} accept.
 *
 * @example
 * ```ts
 * const alg = serverAlgs.find((a) => DPOP_ALGS.includes(a as DpopAlg)) as DpopAlg | undefined
 * ```
 */
export const DPOP_ALGS: readonly DpopAlg[] = Object.freeze(['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'])

/**
 * A public JWK with only the RFC 7638 required members.
 *
 * @example
 * ```ts
 * const jwk: PublicJwk = (await generateDpopKey()).publicJwk // { kty: 'EC', crv: 'P-256', x, y }
 * ```
 */
export type PublicJwk =
  | { kty: 'EC'; crv: 'P-256' | 'P-384'; x: string; y: string }
  | { kty: 'OKP'; crv: 'Ed25519'; x: string }
  | { kty: 'RSA'; n: string; e: string }

/**
 * What signs a JWS for Bound: DPoP proofs, and the client assertions of `privateKeyJwt`. Bound's
 * own keys implement it; so can a KMS, an HSM or Vault transit. `sign` returns the JWS signature
 * bytes (for ES*: raw `r || s`, not DER).
 *
 * @example
 * ```ts
 * const signer: JwsSigner = { alg: 'ES256', publicJwk, sign: (bytes) => kms.sign({ keyId, message: bytes }) }
 * const key = fromSigner(signer)
 * ```
 */
export interface JwsSigner {
  /** The JWS `alg`. */
  readonly alg: DpopAlg
  /** The public key, as it goes into the proof header. Public members only. */
  readonly publicJwk: PublicJwk
  /** Signs the JWS signing input. May be synchronous (fastest) or asynchronous (remote signers). */
  sign(data: Uint8Array): Uint8Array | Promise<Uint8Array>
}

/**
 * The former name of {@link JwsSigner} (it signs client assertions too, not only DPoP proofs).
 *
 * @deprecated Use {@link JwsSigner}; this alias goes in 0.3.
 * @example
 * ```ts
 * const signer: JwsSigner = legacySigner satisfies DpopSigner
 * ```
 */
export type DpopSigner = JwsSigner

/**
 * A DPoP key: a {@link JwsSigner} plus its RFC 7638 thumbprint (`jkt`).
 *
 * @example
 * ```ts
 * const key: DpopKey = await generateDpopKey()
 * createSession({ …, dpop: key })
 * console.log(key.jkt) // the cnf.jkt of the tokens bound to it
 * ```
 */
export interface DpopKey extends JwsSigner {
  /** RFC 7638 SHA-256 thumbprint of `publicJwk`, base64url: the `cnf.jkt` of tokens bound to it. */
  readonly jkt: string
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'] as const

/**
 * RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members in lexicographic order.
 *
 * @example
 * ```ts
 * jwkThumbprint({ kty: 'EC', crv: 'P-256', x: '…', y: '…' }) // '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I'
 * ```
 */
export function jwkThumbprint(jwk: { kty?: string; [k: string]: unknown }): string {
  let canonical: string
  const s = (v: unknown) => {
    if (typeof v !== 'string' || v === '') throw new BoundError('ERR_DPOP_KEY_INVALID', `JWK member is missing or not a string`)
    return JSON.stringify(v)
  }
  switch (jwk.kty) {
    case 'EC':
      canonical = `{"crv":${s(jwk.crv)},"kty":"EC","x":${s(jwk.x)},"y":${s(jwk.y)}}`
      break
    case 'OKP':
      canonical = `{"crv":${s(jwk.crv)},"kty":"OKP","x":${s(jwk.x)}}`
      break
    case 'RSA':
      canonical = `{"e":${s(jwk.e)},"kty":"RSA","n":${s(jwk.n)}}`
      break
    default:
      throw new BoundError('ERR_DPOP_KEY_INVALID', `Unsupported JWK kty ${JSON.stringify(String(jwk.kty)).slice(0, 20)} for a thumbprint`)
  }
  return createHash('sha256').update(canonical).digest('base64url')
}

/**
 * Keeps only the public members RFC 7638 requires, in the order used in proof headers.
 *
 * @example
 * ```ts
 * const publicJwk = toPublicJwk(createPublicKey(pem).export({ format: 'jwk' }))
 * ```
 */
export function toPublicJwk(jwk: NodeJwk | Record<string, unknown>): PublicJwk {
  const j = jwk as Record<string, unknown>
  if (j.kty === 'EC' && (j.crv === 'P-256' || j.crv === 'P-384')) return { kty: 'EC', crv: j.crv, x: String(j.x), y: String(j.y) }
  if (j.kty === 'OKP' && j.crv === 'Ed25519') return { kty: 'OKP', crv: 'Ed25519', x: String(j.x) }
  if (j.kty === 'RSA') return { kty: 'RSA', n: String(j.n), e: String(j.e) }
  throw new BoundError('ERR_DPOP_KEY_INVALID', `Unsupported key type for DPoP (kty ${String(j.kty)}, crv ${String(j.crv)})`)
}

/**
 * True when the JWK has none of the private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`, `oth`).
 *
 * @example
 * ```ts
 * isPublicOnlyJwk({ kty: 'EC', crv: 'P-256', x, y })     // true
 * isPublicOnlyJwk({ kty: 'EC', crv: 'P-256', x, y, d })  // false
 * ```
 */
export function isPublicOnlyJwk(jwk: object): boolean {
  return PRIVATE_MEMBERS.every((m) => !(m in jwk))
}

function algFor(key: KeyObject): DpopAlg | undefined {
  const type = key.asymmetricKeyType
  const details = key.asymmetricKeyDetails ?? {}
  if (type === 'ec') return details.namedCurve === 'prime256v1' ? 'ES256' : details.namedCurve === 'secp384r1' ? 'ES384' : undefined
  if (type === 'ed25519') return 'EdDSA'
  if (type === 'rsa-pss') return 'PS256'
  if (type === 'rsa') return 'RS256'
  return undefined
}

function checkKeyForAlg(key: KeyObject, alg: DpopAlg): void {
  const type = key.asymmetricKeyType
  const details = key.asymmetricKeyDetails ?? {}
  const describe = `${type ?? 'unknown'}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength}-bit` : ''}`
  const ok =
    (alg === 'ES256' && type === 'ec' && details.namedCurve === 'prime256v1') ||
    (alg === 'ES384' && type === 'ec' && details.namedCurve === 'secp384r1') ||
    (alg === 'EdDSA' && type === 'ed25519') ||
    ((alg === 'PS256' || alg === 'RS256') && (type === 'rsa' || (type === 'rsa-pss' && alg === 'PS256')))
  if (!ok) throw new BoundError('ERR_DPOP_KEY_INVALID', `The key (${describe}) cannot sign ${alg}`)
  if ((type === 'rsa' || type === 'rsa-pss') && (details.modulusLength ?? 0) < 2048) {
    throw new BoundError('ERR_DPOP_KEY_INVALID', `RSA keys for DPoP must have at least 2048 bits (got ${details.modulusLength ?? 'unknown'})`)
  }
}

/** A synchronous signing function for `alg` over a private `KeyObject`. */
function signerFor(alg: DpopAlg, key: KeyObject): (data: Uint8Array) => Buffer {
  switch (alg) {
    case 'ES256':
    case 'ES384': {
      const hash = alg === 'ES256' ? 'sha256' : 'sha384'
      const opts = { key, dsaEncoding: 'ieee-p1363' as const }
      return (data) => nodeSign(hash, data, opts)
    }
    case 'EdDSA':
      return (data) => nodeSign(null, data, key)
    case 'PS256': {
      const opts = { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 }
      return (data) => nodeSign('sha256', data, opts)
    }
    case 'RS256':
      return (data) => nodeSign('sha256', data, key)
  }
}

function verifierFor(alg: DpopAlg, key: KeyObject): (data: Uint8Array, sig: Uint8Array) => boolean {
  switch (alg) {
    case 'ES256':
    case 'ES384':
      return (d, s) => nodeVerify(alg === 'ES256' ? 'sha256' : 'sha384', d, { key, dsaEncoding: 'ieee-p1363' }, s)
    case 'EdDSA':
      return (d, s) => nodeVerify(null, d, key, s)
    case 'PS256':
      return (d, s) => nodeVerify('sha256', d, { key, padding: 6, saltLength: 32 }, s)
    case 'RS256':
      return (d, s) => nodeVerify('sha256', d, key, s)
  }
}

function makeKey(alg: DpopAlg, privateKey: KeyObject, publicKey: KeyObject): DpopKey {
  checkKeyForAlg(privateKey, alg)
  const publicJwk = Object.freeze(toPublicJwk(publicKey.export({ format: 'jwk' })))
  const sign = signerFor(alg, privateKey)
  // the public half must belong to the private half
  const probe = Buffer.from('bound-key-check')
  if (!verifierFor(alg, publicKey)(probe, sign(probe))) {
    throw new BoundError('ERR_DPOP_KEY_INVALID', 'The public key does not match the private key')
  }
  const jkt = jwkThumbprint(publicJwk)
  const key: DpopKey = { alg, publicJwk, jkt, sign }
  return Object.freeze(key)
}

/**
 * Options of {@link generateDpopKey} (and {@link loadOrCreateDpopKey}).
 *
 * @example
 * ```ts
 * const key = await generateDpopKey({ alg: 'PS256', modulusLength: 3072 })
 * ```
 */
export interface GenerateDpopKeyOptions {
  /** JWS algorithm. Default `'ES256'`. */
  alg?: DpopAlg
  /** RSA modulus length in bits for PS256/RS256 (≥ 2048). Default 2048. */
  modulusLength?: number
}

/**
 * Generates a DPoP key. The private key never leaves the returned key object: on Node.js 20–23 it
 * is a non-extractable WebCrypto key that Bound signs with synchronously through a `KeyObject` view
 * kept in a closure; on Node.js 24+ (which deprecates that path) it is a `node:crypto` `KeyObject`
 * kept in the same closure. Nothing exposes, exports or writes it.
 *
 * @example
 * ```ts
 * import { generateDpopKey } from '@bound/dpop'
 * const key = await generateDpopKey()            // ES256
 * const ed = await generateDpopKey({ alg: 'EdDSA' })
 * console.log(key.jkt)
 * ```
 */
const checkGenerate = optionsChecker('generateDpopKey', { alg: z.string().optional(), modulusLength: z.number().int().optional() })
const checkImport = optionsChecker('importDpopKey', { alg: z.string().optional() })

export async function generateDpopKey(options: GenerateDpopKeyOptions = {}): Promise<DpopKey> {
  checkGenerate(options)
  const alg = options.alg ?? 'ES256'
  if (!DPOP_ALGS.includes(alg)) {
    throw new BoundError('ERR_DPOP_ALG_UNSUPPORTED', `generateDpopKey: unsupported alg ${JSON.stringify(alg)}; use one of ${DPOP_ALGS.join(', ')}`)
  }
  const modulusLength = options.modulusLength ?? 2048
  if (!Number.isInteger(modulusLength) || modulusLength < 2048) {
    throw new BoundError('ERR_DPOP_KEY_INVALID', `RSA keys for DPoP must have at least 2048 bits (got ${modulusLength})`)
  }
  if (SYNC_CRYPTOKEY_SIGNING) {
    const pair = (await webcrypto.subtle.generateKey(keyGenParams(alg, modulusLength), false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
    return makeKey(alg, KeyObject.from(pair.privateKey), KeyObject.from(pair.publicKey))
  }
  // Node 24 deprecates signing synchronously with WebCrypto keys (DEP0203/DEP0204): the key is a
  // node:crypto KeyObject kept in a closure — Bound has no path that exports it.
  const { privateKey, publicKey } = generateKeyPairSync(...nodeKeyGenArgs(alg, modulusLength))
  return makeKey(alg, privateKey, publicKey)
}

/**
 * Whether this Node can sign synchronously with a non-extractable WebCrypto key through
 * `KeyObject.from` without a deprecation (Node < 24).
 */
const SYNC_CRYPTOKEY_SIGNING = Number(process.versions.node.split('.')[0]) < 24

function nodeKeyGenArgs(alg: DpopAlg, modulusLength: number): Parameters<typeof generateKeyPairSync> {
  if (alg === 'ES256' || alg === 'ES384') return ['ec', { namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' }] as never
  if (alg === 'EdDSA') return ['ed25519'] as never
  return ['rsa', { modulusLength }] as never
}

/** A DPoP key over a WebCrypto key pair that stays in WebCrypto (asynchronous signing). */
async function webCryptoKey(alg: DpopAlg, pair: webcrypto.CryptoKeyPair): Promise<DpopKey> {
  const publicJwk = Object.freeze(toPublicJwk((await webcrypto.subtle.exportKey('jwk', pair.publicKey)) as Record<string, unknown>))
  const params = alg === 'EdDSA' ? { name: 'Ed25519' } : alg === 'ES256' || alg === 'ES384' ? { name: 'ECDSA', hash: alg === 'ES256' ? 'SHA-256' : 'SHA-384' } : alg === 'PS256' ? { name: 'RSA-PSS', saltLength: 32 } : { name: 'RSASSA-PKCS1-v1_5' }
  const sign = async (data: Uint8Array) => new Uint8Array(await webcrypto.subtle.sign(params, pair.privateKey, data))
  const probe = Buffer.from('bound-key-check')
  if (!(await webcrypto.subtle.verify(params, pair.publicKey, await sign(probe), probe))) {
    throw new BoundError('ERR_DPOP_KEY_INVALID', 'The public key does not match the private key')
  }
  return Object.freeze({ alg, publicJwk, jkt: jwkThumbprint(publicJwk), sign })
}

function keyGenParams(alg: DpopAlg, modulusLength: number) {
  if (alg === 'ES256' || alg === 'ES384') return { name: 'ECDSA', namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' }
  if (alg === 'EdDSA') return { name: 'Ed25519' }
  return { name: alg === 'PS256' ? 'RSA-PSS' : 'RSASSA-PKCS1-v1_5', modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
}

/**
 * Key material {@link importDpopKey} accepts.
 *
 * @example
 * ```ts
 * const input: DpopKeyInput = readFileSync('dpop-key.pem', 'utf8') // or a private JWK, a KeyObject, a CryptoKeyPair
 * const key = await importDpopKey(input)
 * ```
 */
export type DpopKeyInput =
  | string // PEM, PKCS#8 (or PKCS#1 / SEC1)
  | Buffer
  | KeyObject
  | webcrypto.CryptoKeyPair
  | (NodeJwk & { alg?: string })

/**
 * Imports an existing private key as a DPoP key: a private JWK, a PEM (PKCS#8), a private
 * `KeyObject`, or a WebCrypto `CryptoKeyPair`. The alg is taken from `options.alg`, else the JWK's
 * `alg`, else the key type (P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA, RSA → RS256,
 * RSA-PSS → PS256). Keys too weak for DPoP, or that cannot sign the alg, are refused with
 * `ERR_DPOP_KEY_INVALID`.
 *
 * @example
 * ```ts
 * import { importDpopKey } from '@bound/dpop'
 * const key = await importDpopKey(process.env.DPOP_KEY_PEM!, { alg: 'ES256' })
 * ```
 */
export async function importDpopKey(input: DpopKeyInput, options: { alg?: DpopAlg } = {}): Promise<DpopKey> {
  checkImport(options)
  let privateKey: KeyObject
  let publicKey: KeyObject
  let jwkAlg: string | undefined
  try {
    if (input instanceof KeyObject) {
      privateKey = input
      publicKey = createPublicKey(input)
    } else if (typeof input === 'string' || Buffer.isBuffer(input)) {
      privateKey = createPrivateKey(input)
      publicKey = createPublicKey(privateKey)
    } else if (isCryptoKeyPair(input)) {
      if (!SYNC_CRYPTOKEY_SIGNING && !input.privateKey.extractable) {
        // keep it in WebCrypto (Node 24+ deprecates using it from node:crypto)
        const alg = options.alg ?? cryptoKeyAlg(input.privateKey)
        if (alg === undefined) throw new BoundError('ERR_DPOP_ALG_UNSUPPORTED', 'No supported DPoP alg for this CryptoKey')
        return await webCryptoKey(alg, input)
      }
      privateKey = KeyObject.from(input.privateKey)
      publicKey = KeyObject.from(input.publicKey)
    } else if (typeof input === 'object' && input !== null && typeof (input as NodeJwk).kty === 'string') {
      const jwk = input as NodeJwk & { alg?: string }
      if (typeof jwk.d !== 'string') throw new BoundError('ERR_DPOP_KEY_INVALID', 'importDpopKey needs a private JWK (with "d")')
      jwkAlg = jwk.alg
      privateKey = createPrivateKey({ key: jwk, format: 'jwk' })
      publicKey = createPublicKey(privateKey)
    } else {
      throw new BoundError('ERR_DPOP_KEY_INVALID', 'importDpopKey: unsupported key input (use a private JWK, a PEM, a KeyObject or a CryptoKeyPair)')
    }
  } catch (err) {
    if (err instanceof BoundError) throw err
    throw new BoundError('ERR_DPOP_KEY_INVALID', 'importDpopKey: the key could not be read', { cause: err instanceof Error ? new Error(err.message.slice(0, 200)) : undefined })
  }
  if (privateKey.type !== 'private') throw new BoundError('ERR_DPOP_KEY_INVALID', 'importDpopKey needs a private key')
  if (jwkAlg !== undefined && options.alg !== undefined && jwkAlg !== options.alg) {
    throw new BoundError('ERR_DPOP_KEY_INVALID', `The JWK says alg ${jwkAlg} but ${options.alg} was asked for`)
  }
  const alg = options.alg ?? (jwkAlg as DpopAlg | undefined) ?? algFor(privateKey)
  if (alg === undefined || !DPOP_ALGS.includes(alg)) {
    throw new BoundError('ERR_DPOP_ALG_UNSUPPORTED', `No supported DPoP alg for this key${alg ? ` (${alg})` : ''}; use one of ${DPOP_ALGS.join(', ')}`)
  }
  return makeKey(alg, privateKey, publicKey)
}

function cryptoKeyAlg(key: webcrypto.CryptoKey): DpopAlg | undefined {
  const a = key.algorithm as { name: string; namedCurve?: string }
  if (a.name === 'ECDSA') return a.namedCurve === 'P-256' ? 'ES256' : a.namedCurve === 'P-384' ? 'ES384' : undefined
  if (a.name === 'Ed25519') return 'EdDSA'
  if (a.name === 'RSA-PSS') return 'PS256'
  if (a.name === 'RSASSA-PKCS1-v1_5') return 'RS256'
  return undefined
}

function isCryptoKeyPair(v: unknown): v is webcrypto.CryptoKeyPair {
  return typeof v === 'object' && v !== null && 'privateKey' in v && 'publicKey' in v && isCryptoKey(v.privateKey)
}

/**
 * Wraps any {@link JwsSigner} (KMS, HSM, Vault transit…) as a {@link DpopKey}: checks the alg and
 * that the JWK is public-only, and computes the `jkt`.
 *
 * @example
 * ```ts
 * const key = fromSigner({ alg: 'ES256', publicJwk, sign: (bytes) => kms.sign(bytes) })
 * ```
 */
export function fromSigner(signer: JwsSigner): DpopKey {
  if (!DPOP_ALGS.includes(signer.alg)) throw new BoundError('ERR_DPOP_ALG_UNSUPPORTED', `Unsupported signer alg ${String(signer.alg)}`)
  if (!isPublicOnlyJwk(signer.publicJwk)) throw new BoundError('ERR_DPOP_KEY_INVALID', 'The signer publicJwk contains private members')
  const publicJwk = Object.freeze(toPublicJwk(signer.publicJwk))
  const expected = signer.alg === 'EdDSA' ? 'OKP' : signer.alg.startsWith('ES') ? 'EC' : 'RSA'
  if (publicJwk.kty !== expected) throw new BoundError('ERR_DPOP_KEY_INVALID', `A ${signer.alg} signer needs a ${expected} key, got ${publicJwk.kty}`)
  return Object.freeze({ alg: signer.alg, publicJwk, jkt: jwkThumbprint(publicJwk), sign: (d: Uint8Array) => signer.sign(d) })
}

function isCryptoKey(v: unknown): boolean {
  const ctor = (globalThis as { CryptoKey?: abstract new () => unknown }).CryptoKey
  return ctor !== undefined && v instanceof ctor
}

/**
 * Where a workload keeps its DPoP key between restarts. Bound writes nothing unless given one.
 *
 * @example
 * ```ts
 * const persistence: DpopKeyPersistence = {
 *   load: async () => (await secrets.get('dpop-key')) ?? undefined,
 *   save: (jwk) => secrets.put('dpop-key', jwk),
 * }
 * const key = await loadOrCreateDpopKey(persistence)
 * ```
 */
export interface DpopKeyPersistence {
  /** The stored private JWK, or undefined when there is none yet. */
  load(): Promise<(NodeJwk & { alg?: string }) | undefined> | (NodeJwk & { alg?: string }) | undefined
  /** Stores a newly generated private JWK (with its `alg`). Keep it like a password. */
  save(jwk: NodeJwk & { alg: DpopAlg }): Promise<void> | void
}

/**
 * Loads the workload's DPoP key through `persistence`, or generates one and saves it, so a
 * restarted workload keeps its binding (`jkt`). A key that is persisted is, by necessity,
 * extractable once — at generation, to hand it to `save`; use {@link generateDpopKey} when the
 * binding need not survive restarts.
 *
 * @example
 * ```ts
 * const key = await loadOrCreateDpopKey({
 *   load: async () => JSON.parse(await readFile(path, 'utf8').catch(() => 'null')) ?? undefined,
 *   save: (jwk) => writeFile(path, JSON.stringify(jwk), { mode: 0o600 }),
 * })
 * ```
 */
export async function loadOrCreateDpopKey(persistence: DpopKeyPersistence, options: GenerateDpopKeyOptions = {}): Promise<DpopKey> {
  checkGenerate(options)
  const stored = await persistence.load()
  if (stored !== undefined && stored !== null) {
    return importDpopKey(stored, options.alg ? { alg: options.alg } : {})
  }
  const alg = options.alg ?? 'ES256'
  if (!DPOP_ALGS.includes(alg)) throw new BoundError('ERR_DPOP_ALG_UNSUPPORTED', `unsupported alg ${JSON.stringify(alg)}`)
  const { privateKey } = generateKeyPairSync(...nodeKeyGenArgs(alg, options.modulusLength ?? 2048))
  const jwk = privateKey.export({ format: 'jwk' })
  const key = await importDpopKey(jwk, { alg })
  await persistence.save({ ...jwk, alg })
  return key
}
