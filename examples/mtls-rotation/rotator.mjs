// The side process: writes new certificate files the way spiffe-helper or cert-manager do
// (write beside, then rename over), every interval, alternating between the pairs it is given.
import { readFile, rename, writeFile } from 'node:fs/promises'

const [certFile, keyFile, interval, ...pairs] = process.argv.slice(2)
let i = 0
const rotate = async () => {
  const [cert, key] = pairs.slice((i++ % (pairs.length / 2)) * 2)
  await writeFile(`${keyFile}.tmp`, await readFile(key))
  await writeFile(`${certFile}.tmp`, await readFile(cert))
  await rename(`${keyFile}.tmp`, keyFile)
  await rename(`${certFile}.tmp`, certFile)
  process.send?.({ rotated: i })
}
setInterval(() => void rotate(), Number(interval))
process.on('disconnect', () => process.exit(0))
