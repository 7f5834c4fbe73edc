import { BoundError, type BoundErrorCode } from '@bound/core'
import { networkHint } from '@bound/core/internal'

/** The smallest view of a response Bound reads bodies from. */
export interface ResponseLike {
  readonly status: number
  readonly headers: { get(name: string): string | null }
  readonly body: ReadableStream<Uint8Array> | null
}

/**
 * Reads a response body as text, refusing more than `maxBytes` (the stream is cancelled, so a
 * 10 MB body costs at most `maxBytes`).
 */
export async function readCappedText(res: ResponseLike, maxBytes: number, code: BoundErrorCode, what: string): Promise<string> {
  const declared = Number(res.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {})
    throw new BoundError(code, `The ${what} is larger than ${maxBytes} bytes (Content-Length ${declared})`)
  }
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      total += value.byteLength
      if (total > maxBytes) {
        await reader.cancel().catch(() => {})
        throw new BoundError(code, `The ${what} is larger than ${maxBytes} bytes`)
      }
      chunks.push(value)
    }
  } catch (err) {
    if (err instanceof BoundError) throw err
    throw new BoundError(code, `The ${what} could not be read`, { cause: err })
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Reads a capped JSON object body; anything else is a `code` error. */
export async function readJsonObject(res: ResponseLike, maxBytes: number, code: BoundErrorCode, what: string): Promise<Record<string, unknown>> {
  const text = await readCappedText(res, maxBytes, code, what)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new BoundError(code, `The ${what} is not JSON (HTTP ${res.status}, content-type ${res.headers.get('content-type') ?? 'none'})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new BoundError(code, `The ${what} is not a JSON object (HTTP ${res.status})`)
  }
  return json as Record<string, unknown>
}

/** Wraps a transport failure (DNS, TCP, TLS, abort) as `ERR_NETWORK`, or passes an abort through. */
export function networkError(err: unknown, what: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason ?? err
  if (err instanceof BoundError) return err
  const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause : err) : undefined
  const detail = cause ? `${(cause as { code?: string }).code ?? cause.name}: ${cause.message}`.slice(0, 200) : 'unknown error'
  return new BoundError('ERR_NETWORK', `Could not reach the ${what} (${detail})${networkHint(err)}`, { cause: err })
}
