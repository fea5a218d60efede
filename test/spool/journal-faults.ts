// Fault injection for the sink journals (storage/journal-file.ts): a full disk that refuses the "sealed" records a
// test names, while the spool's log and every other journal record are written as usual.
import { vi } from 'vitest'
import { JournalFile } from '../../src/storage/journal-file.js'

/**
 * Makes journal appends of seal records fail with ENOSPC while `refuses(batchName)` says so; returns how many were
 * refused so far. Undo with vi.restoreAllMocks().
 */
export function refuseSeals(refuses: (batchName: string) => boolean): { readonly refused: number } {
  const counter = { refused: 0 }
  const append = JournalFile.prototype.append
  vi.spyOn(JournalFile.prototype, 'append').mockImplementation(function (
    this: JournalFile<unknown>,
    record: unknown,
    sync: boolean,
  ) {
    const sealed = (record as { s?: string }).s
    if (sealed !== undefined && refuses(sealed)) {
      counter.refused++
      return Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }))
    }
    return append.call(this, record, sync)
  })
  return counter
}
