// RunIds keeps only the first id of a request whose entries took consecutive built-in ids, and lists them all
// otherwise: the run's events must get back exactly the ids pushed.
import { describe, expect, it } from 'vitest'
import { RunIds } from '../../src/pipeline/run-writer.js'

function idsOf(pushed: (string | number)[]) {
  const ids = new RunIds()
  for (const id of pushed) ids.push(id)
  return { count: ids.count, keys: ids.keys }
}

describe('RunIds', () => {
  it('keeps the first of consecutive built-in ids, and lists any others as pushed', () => {
    expect(idsOf([5, 6, 7])).toEqual({ count: 3, keys: 5 })
    expect(idsOf([5, 6, 8])).toEqual({ count: 3, keys: [5, 6, 8] })
    expect(idsOf([5, 4])).toEqual({ count: 2, keys: [5, 4] })
    expect(idsOf([5, 6, 'app', 7])).toEqual({ count: 4, keys: [5, 6, 'app', 7] })
    expect(idsOf(['app', 1, 2])).toEqual({ count: 3, keys: ['app', 1, 2] })
    expect(idsOf([0])).toEqual({ count: 1, keys: 0 })
  })
})
