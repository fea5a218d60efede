// `sidelog top` against a running sidelog: `--once` prints one frame (and fails clearly when nothing answers), and
// the live view draws and redraws in a real terminal (tmux), then quits on q. Without tmux that test says so and
// skips; .ci/run installs tmux.
import { execFile, spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { assertBuilt, MAIN, postNdjson, type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import { waitForHealth } from '../faults/harness.js'
import { tempDir, until } from '../helpers.js'

const run = promisify(execFile)
const hasTmux = spawnSync('tmux', ['-V']).status === 0
if (!hasTmux) console.warn('sidelog top in a terminal: skipped, tmux is not installed (apt-get install tmux)')

let sidelog: SidelogProcess | undefined
afterEach(() => {
  sidelog?.child.kill('SIGKILL')
  sidelog = undefined
})

async function startWithEntries(count: number): Promise<SidelogProcess> {
  const dir = await tempDir()
  const started = await spawnSidelog({ DATA_DIR: join(dir, 'data'), FLUSH_INTERVAL: '0.1' })
  const entries = Array.from({ length: count }, (_, i) => ({ message: `m${i}` }))
  expect((await postNdjson(started.url, entries)).status).toBe(202)
  await waitForHealth(started.url, (h) => h.sinks.file?.delivered_events === count, 30_000)
  return started
}

describe('sidelog top --once', () => {
  it('prints one frame with every sink and exits 0', async () => {
    assertBuilt()
    sidelog = await startWithEntries(40)
    const { stdout } = await run(process.execPath, [
      MAIN,
      'top',
      '--once',
      '--interval',
      '0.2',
      '--url',
      sidelog.url,
    ])
    expect(stdout).toMatch(/^sidelog top {2}http:\/\/127\.0\.0\.1:\d+ {2}instance [0-9a-f]{12} {2}HEALTHY/)
    expect(stdout).toMatch(/^http\s+\d[\d,]*\s+40\s+-$/m)
    expect(stdout).toMatch(/^file\s+\d[\d,]*\s+40\s+\[\.{20}\]\s+0%\s+-\s+0\s+0\s+ok\s+-$/m)
  })

  it('as sidelog-top, finds sidelog from the same settings it runs with', async () => {
    sidelog = await startWithEntries(3)
    const port = new URL(sidelog.url).port
    const { stdout } = await run(
      process.execPath,
      [MAIN.replace(/main\.js$/, 'top.js'), '--once', '--interval', '0.1'],
      {
        env: { PATH: process.env.PATH, SIDELOG_PORT: port },
      },
    )
    expect(stdout).toMatch(/^file\s+\S+\s+3\s/m)
  })

  it('exits 1 saying why when nothing answers', async () => {
    assertBuilt()
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise((resolve) => probe.close(resolve))
    const failed = await run(process.execPath, [MAIN, 'top', '--once', '--url', url]).catch(
      (err: { code: number; stderr: string }) => err,
    )
    expect(failed).toMatchObject({ code: 1 })
    expect((failed as { stderr: string }).stderr).toBe(
      `sidelog top: cannot read ${url}: connect ECONNREFUSED ${url.slice(7)}\n`,
    )
  })
})

describe.skipIf(!hasTmux)('sidelog top in a terminal (tmux)', () => {
  it('draws a frame, redraws it as entries arrive, and quits on q', async () => {
    assertBuilt()
    sidelog = await startWithEntries(10)
    const socket = `sidelog-top-test-${process.pid}`
    const tmux = (...args: string[]) =>
      run('tmux', ['-L', socket, '-f', '/dev/null', ...args], {
        env: { ...process.env, TERM: 'xterm-256color' },
      })
    const screen = async () => (await tmux('capture-pane', '-p', '-t', 'top')).stdout
    const statusFile = join(await tempDir(), 'top-exit-status')
    try {
      // remain-on-exit first, so that the pane (and top's exit status) outlives the process.
      await tmux(
        'start-server',
        ';',
        'set-option',
        '-g',
        'remain-on-exit',
        'on',
        ';',
        'new-session',
        '-d',
        '-s',
        'top',
        '-x',
        '120',
        '-y',
        '30',
        // The shell writes top's exit status to a file: tmux's own record of a dead pane's status proved unreliable
        // on a loaded machine (the pane was dead and its status empty for 30 s).
        `'${process.execPath}' '${MAIN}' top --url ${sidelog.url}; echo $? > '${statusFile}'`,
      )
      const first = await until(screen, (s) => /^file\s+\S+\s+10\s/m.test(s), 'a first frame')
      expect(first).toMatch(/^sidelog top {2}http:\/\/127\.0\.0\.1:\d+ .* every 1s {2}q quits$/m)
      expect(first).toMatch(
        /^SINK\s+out\/s\s+delivered\s+buffer\s+fill\s+spool lag\s+retries\s+dead letters\s+state\s+last error$/m,
      )

      const more = Array.from({ length: 90 }, (_, i) => ({ message: `more${i}` }))
      expect((await postNdjson(sidelog.url, more)).status).toBe(202)
      const redrawn = await until(
        screen,
        (s) => /^file\s+\S+\s+100\s/m.test(s),
        'a redraw with 100 delivered',
      )
      expect(redrawn).toMatch(/^http\s+\S+\s+100\s+-$/m)
      // Redrawn in place: one frame on the screen, not two.
      expect(redrawn.match(/^SINK /gm)).toHaveLength(1)

      await tmux('send-keys', '-t', 'top', 'q')
      const status = await until(
        () => readFile(statusFile, 'utf8').catch(() => ''),
        (text) => /^\d+\n$/.test(text),
        'top quitting on q',
      )
      expect(status).toBe('0\n')
    } finally {
      await tmux('kill-server').catch(() => {})
    }
  })
})
