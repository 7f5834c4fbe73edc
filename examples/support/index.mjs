// Shared by the examples: start the testkit's servers quietly and print narrated lines.
// In your own code you point Bound at your authorization server and APIs instead.

/** Starts the testkit (AS + verifying RS on 127.0.0.1) without oidc-provider's development warnings. */
export async function startServers(options) {
  const warn = console.warn
  console.warn = (...args) => void (String(args[0]).startsWith('oidc-provider WARNING') || warn(...args))
  const { startTestkit } = await import('@bound/testkit')
  return startTestkit(options)
}

const started = performance.now()
/** Prints a line with the time since start. */
export const log = (line) => console.log(`[${((performance.now() - started) / 1000).toFixed(2).padStart(5)}s] ${line}`)

/** Runs `main`, exits 0 when it resolves and 1 (with the reason) when it throws or takes longer than `seconds`. */
export function run(main, seconds = 30) {
  const timer = setTimeout(() => {
    console.error(`example did not finish within ${seconds} s`)
    process.exit(1)
  }, seconds * 1000)
  timer.unref()
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(`example failed: ${err?.code ? `${err.code}: ` : ''}${err?.message ?? err}`)
      process.exit(1)
    },
  )
}

/** Throws unless `condition`. */
export function check(condition, message) {
  if (!condition) throw new Error(message)
}
