import { createCipheriv, createDecipheriv, createHmac, randomBytes, type KeyObject } from 'node:crypto'
import { BoundError } from '@bound/core'

/**
 * A key for the values of a shared token store: 32 bytes (AES-256-GCM), as bytes, a secret
 * `KeyObject`, or base64/base64url text (`openssl rand -base64 32`).
 *
 * @example
 * ```ts
 * const encryptionKey: StoreEncryptionKey = process.env.BOUND_STORE_KEY! // 32 bytes, base64
 * ```
 */
export type StoreEncryptionKey = Uint8Array | KeyObject | string

/** Seals and opens the values of a shared store; the key's id travels with each value (rotation). */
export interface StoreCipher {
  /** `v1.<key id>.<iv>.<ciphertext and tag>`, bound to `context` (the store key and generation). */
  seal(plaintext: string, context: string): string
  /** The plaintext, or undefined when no key opens it or it was not sealed for `context`. */
  open(sealed: string, context: string): string | undefined
}

const bytesOf = (key: StoreEncryptionKey, i: number): Buffer => {
  let bytes: Buffer
  if (typeof key === 'string') {
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(key.trim())) throw new BoundError('ERR_INVALID_CONFIG', `store.encryptionKey${i ? `[${i}]` : ''}: must be 32 bytes, as bytes, a KeyObject or base64 text`)
    bytes = Buffer.from(key.trim(), key.includes('-') || key.includes('_') ? 'base64url' : 'base64')
  } else if (key instanceof Uint8Array) {
    bytes = Buffer.from(key)
  } else if (typeof key === 'object' && key !== null && (key as KeyObject).type === 'secret') {
    bytes = (key as KeyObject).export()
  } else {
    throw new BoundError('ERR_INVALID_CONFIG', `store.encryptionKey${i ? `[${i}]` : ''}: must be 32 bytes, as bytes, a secret KeyObject or base64 text`)
  }
  // (the length only: never the key)
  if (bytes.length !== 32) throw new BoundError('ERR_INVALID_CONFIG', `store.encryptionKey${i ? `[${i}]` : ''}: must be 32 bytes for AES-256-GCM (got ${bytes.length}); make one with \`openssl rand -base64 32\``)
  return bytes
}

/**
 * AES-256-GCM over the values a fleet shares (FLEET-05). The first key seals; every key opens
 * (rotation: put the new key first, keep the old one until its values expired). The associated
 * data is the store key and generation, so a value moved to another key or generation does not
 * open. Key ids are an HMAC of the key, never the key.
 */
export function createStoreCipher(keys: StoreEncryptionKey | readonly StoreEncryptionKey[]): StoreCipher {
  const list = (Array.isArray(keys) ? keys : [keys]) as StoreEncryptionKey[]
  if (list.length === 0) throw new BoundError('ERR_INVALID_CONFIG', 'store.encryptionKey: give at least one key')
  const entries = list.map((k, i) => {
    const key = bytesOf(k, i)
    return { key, id: createHmac('sha256', key).update('bound token store key id').digest('base64url').slice(0, 8) }
  })
  const byId = new Map(entries.map((e) => [e.id, e.key]))
  const sealer = entries[0]!
  return {
    seal(plaintext, context) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', sealer.key, iv)
      cipher.setAAD(Buffer.from(context))
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()])
      return `v1.${sealer.id}.${iv.toString('base64url')}.${body.toString('base64url')}`
    },
    open(sealed, context) {
      const [version, id, ivText, bodyText] = sealed.split('.')
      const key = id === undefined ? undefined : byId.get(id)
      if (version !== 'v1' || !key || !ivText || !bodyText) return undefined
      try {
        const body = Buffer.from(bodyText, 'base64url')
        if (body.length < 16) return undefined
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivText, 'base64url'))
        decipher.setAAD(Buffer.from(context))
        decipher.setAuthTag(body.subarray(body.length - 16))
        return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8')
      } catch {
        return undefined
      }
    },
  }
}
