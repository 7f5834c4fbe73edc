/**
 * A bound fetch's response headers as Node's HTTP clients hold them (lower-case names; `set-cookie`
 * as a list; other repeats joined). The body a bound fetch returns is already decoded, so its
 * `content-encoding` and the `content-length` of the coded body are left out: a client must not
 * decode it again, nor count it against the coded length.
 */
export function decodedHeaderRecord(res: Response): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  res.headers.forEach((value, name) => {
    if (name !== 'set-cookie') out[name] = value
  })
  const cookies = res.headers.getSetCookie()
  if (cookies.length > 0) out['set-cookie'] = cookies
  if (out['content-encoding'] !== undefined) {
    delete out['content-encoding']
    delete out['content-length']
  }
  return out
}
