import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { csvToDataset, parseCsvRecords, type CsvOptions } from './csv.ts'
import { DatasetError } from './datasetError.ts'

const penguins = readFileSync(new URL('../../datasets/penguins/penguins.csv', import.meta.url))

function refusal(input: string | Uint8Array, options: CsvOptions): DatasetError {
  try {
    csvToDataset(input, options)
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetError)
    return error as DatasetError
  }
  throw new Error('the CSV was accepted')
}

describe('CSV records', () => {
  it('reads quoted cells, doubled quotes, CRLF, a BOM, and skips blank lines', () => {
    expect(parseCsvRecords('\ufeffa,b\r\n"x, y","say ""hi"""\n\n1,2\n')).toEqual([
      ['a', 'b'],
      ['x, y', 'say "hi"'],
      ['1', '2'],
    ])
    expect(parseCsvRecords('a,b\n1,"multi\nline"')).toEqual([
      ['a', 'b'],
      ['1', 'multi\nline'],
    ])
  })

  it('names the row of an unclosed quote', () => {
    expect(() => parseCsvRecords('a,b\n1,2\n3,"4\n', 'f.csv')).toThrow('f.csv: row 3: a quoted cell is never closed')
  })
})

describe('CSV to IDX', () => {
  it('refuses the penguins as shipped: their empty cells, by row and column', () => {
    const e = refusal(penguins, { labelColumn: 'Species', fileName: 'penguins.csv' })
    expect(e.code).toBe('empty_cell')
    expect(e.message).toBe('penguins.csv: row 5, column "Beak Length (mm)": empty cell (fill it in, or drop incomplete rows)')
  })

  it('converts the penguins with incomplete rows dropped: one-hot islands and sexes, standardised numbers, sorted species', () => {
    const set = csvToDataset(penguins, { labelColumn: 'Species', dropIncompleteRows: true })
    expect(set.droppedRows).toEqual([5, 10, 11, 12, 13, 49, 248, 288, 326, 341])
    expect(set.labelNames).toEqual(['Adelie', 'Chinstrap', 'Gentoo'])
    expect(set.classes).toBe(3)
    expect(set.featureNames).toEqual([
      'Island=Biscoe',
      'Island=Dream',
      'Island=Torgersen',
      'Beak Length (mm)',
      'Beak Depth (mm)',
      'Flipper Length (mm)',
      'Body Mass (g)',
      'Sex=.', // one penguin's sex is recorded as "." in the source: a category like any other
      'Sex=FEMALE',
      'Sex=MALE',
    ])
    const total = set.train.labels.shape[0]! + set.heldOut.labels.shape[0]!
    expect(total).toBe(344 - 10)
    expect(set.heldOut.labels.shape[0]).toBe(Math.round(334 * 0.2))
    expect(set.train.images.shape).toEqual([total - 67, 10])
    expect(set.train.images.data).toBeInstanceOf(Float32Array)
    // Training features have mean 0 and std 1 after standardisation; the record keeps the originals.
    const x = set.train.images.data as Float32Array
    const n = set.train.images.shape[0]!
    const column = (j: number) => Array.from({ length: n }, (_, i) => x[i * 10 + j]!)
    const massMean = column(6).reduce((a, b) => a + b, 0) / n
    expect(Math.abs(massMean)).toBeLessThan(1e-5)
    expect(set.standardization!.mean[6]).toBeGreaterThan(4000)
    expect(set.standardization!.mean[6]).toBeLessThan(4400)
    expect(set.standardization!.std[0]).toBe(1)
    // Every species is in both parts (the file is sorted by species; the split is a fixed permutation).
    for (const labels of [set.train.labels.data, set.heldOut.labels.data]) expect(new Set(labels)).toEqual(new Set([0, 1, 2]))
    // Deterministic: the same file gives the same bytes.
    expect(csvToDataset(penguins, { labelColumn: 'Species', dropIncompleteRows: true })).toEqual(set)
  })

  it('uses only the named feature columns, and refuses unknown ones listing the header', () => {
    const set = csvToDataset(penguins, { labelColumn: 'Island', featureColumns: ['Beak Length (mm)', 'Flipper Length (mm)'], dropIncompleteRows: true })
    expect(set.featureNames).toEqual(['Beak Length (mm)', 'Flipper Length (mm)'])
    expect(set.labelNames).toEqual(['Biscoe', 'Dream', 'Torgersen'])
    const e = refusal(penguins, { labelColumn: 'species' })
    expect(e.code).toBe('unknown_column')
    expect(e.message).toMatch(/no column "species"; the header has "Species", "Island", /)
  })

  it('sorts numeric labels numerically', () => {
    const set = csvToDataset('x,y\n1,10\n2,9\n3,10\n4,2\n', { labelColumn: 'y', heldOutFraction: 0.25 })
    expect(set.labelNames).toEqual(['2', '9', '10'])
  })

  it('refuses ragged rows, too many categories, too few rows, and an empty file', () => {
    expect(refusal('a,b\n1,2\n3\n', { labelColumn: 'b' }).message).toBe('CSV: row 3 has 1 cells, the header has 2')
    const ids = ['id,y', ...Array.from({ length: 40 }, (_, i) => `u${i},${i % 2}`)].join('\n')
    const e = refusal(ids, { labelColumn: 'y' })
    expect(e.code).toBe('too_many_categories')
    expect(e.message).toMatch(/column "id" is not numeric \(row 2: "u0"\) and has 40 distinct values; at most 32/)
    expect(refusal('a,b\n1,2\n', { labelColumn: 'b' }).code).toBe('too_few_rows')
    expect(refusal('', { labelColumn: 'b' }).code).toBe('empty_file')
    expect(refusal(new Uint8Array([0x61, 0xff, 0x0a]), { labelColumn: 'a' }).code).toBe('not_utf8')
  })
})
