import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { BoundError, systemClock, type Clock, type Emitter } from '@bound/core'
import { clockRule, createEmitter, durationMs, optionsChecker, z } from '@bound/core/internal'
import { parseClientIdentity, type ClientIdentity } from './identity.js'

/**
 * PEM text or bytes.
 *
 * @example
 * ```ts
 * const ca: Pem = readFileSync('/etc/pki/internal-ca.pem')
 * ```
 */
export type Pem = string | Buffer

/**
 * A client certificate and its private key, in PEM.
 *
 * @example
 * ```ts
 * const clientCertificate: ClientCertificatePem = { cert: process.env.TLS_CERT!, key: process.env.TLS_KEY! }
 * createSession({ …, clientAuth: tlsClientAuth(), clientCertificate })
 * ```
 */
export interface ClientCertificatePem {
  /** The leaf certificate, optionally followed by intermediates. */
  cert: Pem
  /** The private key (PKCS#8, PKCS#1 or SEC1 PEM). */
  key: Pem
  /** Passphrase of an encrypted key. */
  passphrase?: string
}

/**
 * Events of a {@link ClientCertificate}.
 *
 * @example
 * ```ts
 * certificate.events.on('expiring', ({ identity, expiresInMs }) => alert(`${identity.subject} expires in ${expiresInMs} ms`))
 * certificate.events.on('error', ({ code, message }) => log.warn({ code }, message))
 * ```
 */
export interface ClientCertificateEvents {
  /** A new certificate and key were loaded and checked; new requests use them. */
  rotated: { previous: ClientIdentity; current: ClientIdentity }
  /** The current certificate expires soon (see {@link LoadClientCertificateOptions.expiryWarningMs}). */
  expiring: { identity: ClientIdentity; expiresInMs: number }
  /** A reload found files that could not be used (half-written, mismatched, unreadable); the current certificate stays. */
  error: { code: string; message: string }
}

/**
 * A client certificate source: one current {@link ClientIdentity}, replaced when the files rotate.
 *
 * @example
 * ```ts
 * const certificate: ClientCertificate = await loadClientCertificate({ certFile, keyFile, watch: true })
 * certificate.current().x5t // the thumbprint presented now
 * certificate.close()       // when done
 * ```
 */
export interface ClientCertificate {
  /** The certificate in use now. */
  current(): ClientIdentity
  /** Extra trust anchors that came with it (`caFile`), if any. */
  readonly ca: string | undefined
  /** `rotated`, `expiring` and `error` events. */
  readonly events: Emitter<ClientCertificateEvents>
  /** Re-reads the files now. Resolves true when a new certificate was taken. */
  reload(): Promise<boolean>
  /** Stops watching and timers. */
  close(): void
}

/**
 * Options of {@link loadClientCertificate}.
 *
 * @example
 * ```ts
 * const options: LoadClientCertificateOptions = { certFile: '/run/svid/cert.pem', keyFile: '/run/svid/key.pem', caFile: '/run/svid/bundle.pem', watch: true, pollIntervalMs: 30_000 }
 * ```
 */
export interface LoadClientCertificateOptions {
  /** PEM file with the leaf certificate (and optionally its chain, in any order). */
  certFile: string
  /** PEM file with the private key. */
  keyFile: string
  /** PEM trust bundle for the servers (e.g. the SPIFFE bundle), added to Node's roots. */
  caFile?: string
  /** Passphrase of an encrypted key. */
  passphrase?: string
  /** Watch the files and rotate when they change (atomic rename or in place). Default false. */
  watch?: boolean
  /** Quiet time after the last file event before reloading, in milliseconds. Default 100. */
  debounceMs?: number
  /** Also re-read the files every this many milliseconds (for file systems that miss events). Default 0 (off). */
  pollIntervalMs?: number
  /** Warn (`expiring` event) this long before expiry, in milliseconds. Default a tenth of the validity, at least 60 s. */
  expiryWarningMs?: number
  /** Clock for the expiry warning. Default the system clock. */
  clock?: Clock
}

/**
 * Loads a client certificate and key from PEM files, checks they belong together, and with
 * `watch: true` follows rotations the way spiffe-helper, cert-manager and Vault agent write them:
 * a new pair is taken only when both files parse and match (a half-written rotation is never used).
 *
 * @example
 * ```ts
 * import { loadClientCertificate } from '@bound/mtls'
 * const certificate = await loadClientCertificate({ certFile: '/run/svid/cert.pem', keyFile: '/run/svid/key.pem', watch: true })
 * certificate.events.on('rotated', (e) => console.log('new x5t#S256', e.current.x5t))
 * ```
 */
const checkLoadOptions = optionsChecker('loadClientCertificate', {
  certFile: z.string({ error: 'is needed: the PEM file with the certificate' }).min(1),
  keyFile: z.string({ error: 'is needed: the PEM file with the private key' }).min(1),
  caFile: z.string().min(1).optional(),
  passphrase: z.string().optional(),
  watch: z.boolean().optional(),
  debounceMs: durationMs(0, 60_000).optional(),
  pollIntervalMs: durationMs(0, 86_400_000).optional(),
  expiryWarningMs: durationMs(0, 31_536_000_000).optional(),
  clock: clockRule.optional(),
})

export async function loadClientCertificate(options: LoadClientCertificateOptions): Promise<ClientCertificate> {
  if (options === undefined) throw new BoundError('ERR_INVALID_CONFIG', 'loadClientCertificate needs certFile and keyFile')
  checkLoadOptions(options)
  const read = async () => {
    const [cert, key] = await Promise.all([readPem(options.certFile, 'certificate'), readPem(options.keyFile, 'key')])
    return { cert, key, passphrase: options.passphrase }
  }
  const ca = options.caFile ? (await readPem(options.caFile, 'CA bundle')).toString('utf8') : undefined
  const source = createSource(parseClientIdentity(await read(), 1), ca, read, options)
  if (options.watch) source.watchFiles([options.certFile, options.keyFile])
  return source.certificate
}

/**
 * A client certificate from PEM text or bytes (no files, no watching).
 *
 * @example
 * ```ts
 * const certificate = clientCertificateFromPem({ cert: process.env.TLS_CERT!, key: process.env.TLS_KEY! })
 * ```
 */
export function clientCertificateFromPem(input: { cert: Pem; key: Pem; passphrase?: string; ca?: string }, options: { clock?: Clock; expiryWarningMs?: number } = {}): ClientCertificate {
  return createSource(parseClientIdentity(input, 1), input.ca, undefined, options).certificate
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    throw new BoundError('ERR_MTLS_CERTIFICATE_INVALID', `The client ${what} file ${path} could not be read (${(err as { code?: string }).code ?? 'error'})`)
  }
}

function createSource(
  first: ClientIdentity,
  ca: string | undefined,
  read: (() => Promise<{ cert: Pem; key: Pem; passphrase?: string | undefined }>) | undefined,
  options: { debounceMs?: number; pollIntervalMs?: number; expiryWarningMs?: number; clock?: Clock },
) {
  const clock = options.clock ?? systemClock
  const events = createEmitter<ClientCertificateEvents>()
  let current = first
  let closed = false
  const watchers: FSWatcher[] = []
  let debounce: ReturnType<typeof setTimeout> | undefined
  let poll: ReturnType<typeof setInterval> | undefined
  let expiryTimer: ReturnType<typeof setTimeout> | undefined
  let reloading: Promise<boolean> | undefined
  let again = false

  const armExpiry = () => {
    if (expiryTimer) clearTimeout(expiryTimer)
    const validity = current.notAfter - current.notBefore
    const warning = options.expiryWarningMs ?? Math.max(60_000, validity / 10)
    const identity = current
    const fire = () => {
      if (!closed && current === identity) events.emit('expiring', { identity, expiresInMs: identity.notAfter - clock.now() })
    }
    const delay = identity.notAfter - warning - clock.now()
    if (delay <= 0) queueMicrotask(fire)
    else {
      expiryTimer = setTimeout(fire, Math.min(delay, 2 ** 31 - 1))
      expiryTimer.unref()
    }
  }

  const reloadOnce = async (): Promise<boolean> => {
    if (!read || closed) return false
    let next: ClientIdentity
    try {
      next = parseClientIdentity(await read(), current.generation + 1)
    } catch (err) {
      // half-written or broken files: keep the current pair, wait for the next change
      events.emit('error', { code: err instanceof BoundError ? err.code : 'ERR_MTLS_CERTIFICATE_INVALID', message: err instanceof Error ? err.message : String(err) })
      return false
    }
    if (next.x5t === current.x5t || closed) return false
    const previous = current
    current = next
    armExpiry()
    events.emit('rotated', { previous, current })
    return true
  }

  const reload = (): Promise<boolean> => {
    if (reloading) {
      again = true // one more pass once this one ends, however many events arrive meanwhile
      return reloading
    }
    reloading = reloadOnce().finally(() => {
      reloading = undefined
      if (again && !closed) {
        again = false
        void reload()
      }
    })
    return reloading
  }

  const schedule = () => {
    if (closed) return
    if (debounce) clearTimeout(debounce)
    debounce = setTimeout(() => void reload(), options.debounceMs ?? 100)
    debounce.unref()
  }

  armExpiry()
  const certificate: ClientCertificate = {
    current: () => current,
    ca,
    events,
    reload,
    close() {
      closed = true
      for (const w of watchers) w.close()
      for (const t of [debounce, expiryTimer]) if (t) clearTimeout(t)
      if (poll) clearInterval(poll)
    },
  }
  return {
    certificate,
    watchFiles(files: string[]) {
      // Watch the folders, not the files: an atomic rename replaces the inode a file watch follows.
      const names = new Set(files.map((f) => basename(f)))
      for (const dir of new Set(files.map((f) => dirname(f)))) {
        const watcher = watch(dir, { persistent: false }, (_event, filename) => {
          // (Kubernetes swaps a `..data` symlink: any change in the folder may be ours)
          if (filename === null || names.has(String(filename)) || String(filename).startsWith('..')) schedule()
        })
        watcher.on('error', (err) => events.emit('error', { code: 'ERR_MTLS_CERTIFICATE_INVALID', message: `watching ${dir} failed: ${err.message}` }))
        watchers.push(watcher)
      }
      if (options.pollIntervalMs && options.pollIntervalMs > 0) {
        poll = setInterval(() => void reload(), Math.max(1000, options.pollIntervalMs))
        poll.unref()
      }
    },
  }
}
