// fsync for directories: a file created or renamed into a directory survives a power loss only once the directory
// itself is synced. For the spool's segments and journals, whose whole point is surviving one.
import { open } from 'node:fs/promises'

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
