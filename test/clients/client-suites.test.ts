// Each client's own test suite, run by `npm test` so that one command runs everything: the Python handler's
// unittest suite and the Go client's go test (skipped, saying so, where no Go toolchain is installed). The pino
// transport's tests are vitest files and run with the rest.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const CLIENTS = fileURLToPath(new URL('../../clients/', import.meta.url))

const hasGo = await run('go', ['version']).then(
  () => true,
  () => false,
)
if (!hasGo) console.warn('clients: go is not on PATH, so the Go client tests are not run here')

describe("the clients' own suites", () => {
  it('Python: python3 -m unittest passes', { timeout: 180_000 }, async () => {
    const { stderr } = await run('python3', ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {
      cwd: `${CLIENTS}python`,
      timeout: 170_000,
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`python unittest failed:\n${err.stdout}\n${err.stderr}`)
    })
    // unittest reports on stderr: "Ran N tests ... OK".
    expect(stderr).toMatch(/Ran [1-9]\d* tests/)
    expect(stderr).toMatch(/\nOK\b/)
  })

  it.skipIf(!hasGo)('Go: gofmt, go vet and go test pass', { timeout: 300_000 }, async () => {
    const { stdout } = await run('sh', ['test.sh'], {
      cwd: `${CLIENTS}go`,
      timeout: 290_000,
      env: {
        ...process.env,
        GOCACHE: process.env.GOCACHE ?? `${process.env.HOME ?? '/tmp'}/.cache/go-build`,
      },
    }).catch((err: { stdout: string; stderr: string }) => {
      throw new Error(`go test failed:\n${err.stdout}\n${err.stderr}`)
    })
    expect(stdout).toMatch(/^ok\s+sidelog\/clients\/go\b/m)
  })
})
