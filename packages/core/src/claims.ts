/**
 * Merges the client's capabilities into a claims request (Microsoft CAE, CAE-01/CAE-03):
 * `access_token.xms_cc = { values: capabilities }` added to the requested claims.
 *
 * @example
 * ```ts
 * mergeClaims({ access_token: { acrs: { essential: true, value: 'c1' } } }, ['cp1'])
 * // { access_token: { acrs: { essential: true, value: 'c1' }, xms_cc: { values: ['cp1'] } } }
 * ```
 */
export function mergeClaims(claims: Record<string, unknown>, capabilities: readonly string[] | undefined): Record<string, unknown> {
  if (!capabilities || capabilities.length === 0) return claims
  const at = typeof claims.access_token === 'object' && claims.access_token !== null ? (claims.access_token as Record<string, unknown>) : {}
  return { ...claims, access_token: { ...at, xms_cc: { values: [...capabilities] } } }
}
