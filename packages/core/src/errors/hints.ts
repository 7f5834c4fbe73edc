/**
 * One-line advice for the transport failures new users meet first, appended to the message of the
 * error that reports them. Never echoes anything but the failure's own code and the port.
 */
export function networkHint(err: unknown): string {
  let code: string | undefined
  let message = ''
  // the first code down the cause chain (undici wraps the socket's error)
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const c = (e as { code?: unknown }).code
    if (code === undefined && typeof c === 'string' && c !== 'ERR_NETWORK') code = c
    message += ` ${e.message}`
  }
  if (code && /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_UNTRUSTED)$/.test(code)) {
    return ' — the server’s certificate is not trusted here: if an internal CA issued it, give its PEM to the session as `ca` (createSession({ ca }))'
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return ' — the server’s certificate does not name this host: check the URL’s host name'
  if (code === 'CERT_HAS_EXPIRED') return ' — the server’s certificate has expired'
  if (code === 'ECONNREFUSED') return ' — nothing listens there: check the host and port'
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return ' — the host name does not resolve: check it (and DNS)'
  if (/\bbad port\b/i.test(message)) return ' — the port is one the fetch standard blocks (6000, 6665–6669, 10080…): run the server on another port'
  return ''
}
