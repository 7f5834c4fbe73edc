// Extracts every ```ts and ```js block from README.md, the package READMEs and docs/, writes each
// as its own module under .tmp/snippets/, and type-checks them all (strict) against the built
// packages' types, as a user's project would see them. Prints one line per error; exits 1 on any.
// Conventions a snippet may rely on (docs/contributing-docs.md): `…` stands for code left out
// (checked as `...elided`), and the names in test/snippets/globals.d.ts are in scope unless the
// snippet declares them itself.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const out = join(root, '.tmp', 'snippets')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const sources = ['README.md', ...readdirSync(join(root, 'packages')).map((p) => join('packages', p, 'README.md')), ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f)), ...readdirSync(join(root, 'docs', 'guides')).filter((f) => f.endsWith('.md')).map((f) => join('docs', 'guides', f))].filter((f) => existsSync(join(root, f)))

const files = []
const origin = new Map()
for (const source of sources) {
  const text = readFileSync(join(root, source), 'utf8')
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(ts|typescript|js|javascript)\s*(.*)$/.exec(lines[i])
    if (!open) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !lines[end].startsWith('```')) end++
    i = end
    if (/\bno-check\b/.test(open[2])) continue
    const code = lines.slice(start, end).join('\n').replace(/…/g, '...elided')
    const ext = open[1].startsWith('t') ? 'ts' : 'js'
    const name = `${source.replace(/[/.]/g, '_')}__L${start + 1}.${ext === 'ts' ? 'mts' : 'mjs'}`
    // every snippet is a module (top-level await, its own imports)
    writeFileSync(join(out, name), `${code}\nexport {}\n`)
    files.push(join(out, name))
    origin.set(join(out, name), { source, line: start + 1 })
  }
}
writeFileSync(join(out, 'globals.d.ts'), readFileSync(join(root, 'test', 'snippets', 'globals.d.ts'), 'utf8'))

const options = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2023,
  lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  types: ['node'],
  typeRoots: [join(root, 'node_modules', '@types')],
  allowJs: true,
  checkJs: true,
  skipLibCheck: true,
  noUnusedLocals: false,
}
const program = ts.createProgram([...files, join(out, 'globals.d.ts')], options)
const diagnostics = ts.getPreEmitDiagnostics(program)
let errors = 0
for (const d of diagnostics) {
  if (!d.file || !origin.has(d.file.fileName)) {
    console.log(`global: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`)
    errors++
    continue
  }
  const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0)
  const o = origin.get(d.file.fileName)
  console.log(`${o.source}:${o.line + line}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ').slice(0, 300)}`)
  errors++
}
console.log(`${files.length} snippets from ${sources.length} files, ${errors} errors`)
process.exit(errors > 0 ? 1 : 0)
