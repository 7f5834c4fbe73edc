/** One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1). */
export interface Challenge {
  scheme: 'DPoP' | 'Bearer'
  /** auth-params in order; `undefined` values are left out. */
  params: Array<[name: string, value: string | number | undefined]>
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, (character) => `\\${character}`)}"`
}

/** Serialises challenges as one `WWW-Authenticate` field value, comma-separated. */
export function formatChallenges(challenges: Challenge[]): string {
  return challenges
    .map(({ scheme, params }) => {
      const rendered = params
        .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
        // Integers are sent as tokens (e.g. max_age=300), everything else quoted.
        .map(([name, value]) => `${name}=${typeof value === 'number' ? String(value) : quote(value)}`)
      return rendered.length > 0 ? `${scheme} ${rendered.join(', ')}` : scheme
    })
    .join(', ')
}
