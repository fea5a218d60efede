// The tail input's checkpoint file: per file identity (device:inode plus a fingerprint of its first line), the byte
// offset up to which every line was accepted, and the fingerprints of files that were truncated, with their offsets.
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { ConfigError } from '../../errors.js'

export interface FileCheckpoint {
  /** `<device>:<inode>`. */
  readonly key: string
  /** The file's first line (at most 256 bytes): tells a reused inode, and a copy of the file, apart. */
  readonly fingerprint: Buffer
  /** Every line before this byte was accepted. */
  readonly offset: number
  /** Where the file was last seen (for people reading the checkpoint file; sidelog goes by `key`). */
  readonly path: string
  /** Lines up to `to` that may be in the spool already, from entry number `afterSeq` on (see Tailer.pump). */
  readonly pending?: PendingChunk
}

/** A chunk handed to the spool whose checkpoint may not have followed: a restart looks for its lines there. */
export interface PendingChunk {
  readonly to: number
  readonly afterSeq: number
  /**
   * The event id prefixes of other files these lines may have been taken under: the original of a copy-truncate
   * copy, whose lines had the original's ids.
   */
  readonly idPrefixes?: readonly string[]
}

/** A file truncated in place (copy-truncate): a copy with this fingerprint continues from `offset`. */
export interface RetiredFingerprint {
  readonly fingerprint: Buffer
  readonly offset: number
  /** The truncated file's pending chunk, with its id prefix: the copy looks for those lines in the spool. */
  readonly pending?: PendingChunk
}

export interface CheckpointState {
  readonly files: readonly FileCheckpoint[]
  readonly retired: readonly RetiredFingerprint[]
}

interface StoredState {
  version: 1
  files: { key: string; fingerprint: string; offset: number; path: string; pending?: PendingChunk }[]
  retired: { fingerprint: string; offset: number; pending?: PendingChunk }[]
}

export class CheckpointStore {
  constructor(
    readonly path: string,
    /** fsync before the rename: with a disk spool, an accepted line must not be read again after a power loss. */
    private readonly durable: boolean,
  ) {}

  /** The saved state; empty when there is none. A file sidelog cannot read or parse stops start-up. */
  async load(): Promise<CheckpointState> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { files: [], retired: [] }
      throw new ConfigError(`tail checkpoint ${this.path} cannot be read: ${(err as Error).message}`)
    }
    try {
      const stored = JSON.parse(text) as StoredState
      if (stored.version !== 1 || !Array.isArray(stored.files) || !Array.isArray(stored.retired)) {
        throw new Error('unknown format')
      }
      return {
        files: stored.files.map((f) => ({ ...f, fingerprint: Buffer.from(f.fingerprint, 'base64') })),
        retired: stored.retired.map((r) => ({ ...r, fingerprint: Buffer.from(r.fingerprint, 'base64') })),
      }
    } catch (err) {
      throw new ConfigError(
        `tail checkpoint ${this.path} is damaged (${(err as Error).message}): move it away to read every file from the start`,
      )
    }
  }

  /** Replaces the file atomically (temp file and rename), so a crash leaves the old state or the new one. */
  async save(state: CheckpointState): Promise<void> {
    const stored: StoredState = {
      version: 1,
      files: state.files.map((f) => ({ ...f, fingerprint: f.fingerprint.toString('base64') })),
      retired: state.retired.map((r) => ({ ...r, fingerprint: r.fingerprint.toString('base64') })),
    }
    const dir = dirname(this.path)
    const temp = join(dir, `.${basename(this.path)}.${randomBytes(4).toString('hex')}.tmp`)
    const handle = await open(temp, 'w')
    try {
      await handle.writeFile(JSON.stringify(stored))
      if (this.durable) await handle.sync()
    } finally {
      await handle.close()
    }
    try {
      await rename(temp, this.path)
    } catch (err) {
      await unlink(temp).catch(() => {})
      throw err
    }
  }

  /** Fails start-up when the directory cannot be made or written. */
  async check(): Promise<void> {
    try {
      await mkdir(dirname(this.path), { recursive: true })
      await this.save(await this.load())
    } catch (err) {
      if (err instanceof ConfigError) throw err
      throw new ConfigError(`tail checkpoint ${this.path} cannot be written: ${(err as Error).message}`)
    }
  }
}
