/**
 * CSV (a header row, then one example per row) → the IDX pairs training reads: float32 features and uint8
 * class ids, split into training and held-out rows.
 *
 * Decisions, each visible to the requester in the spec or in an error:
 * - Rows are numbered as a spreadsheet shows them: the header is row 1, the first example row 2.
 * - The label column is chosen by name; its distinct values become the classes, sorted (numerically when
 *   every value is a number, else by code point) and recorded in `labelNames`, so "Adelie" is class 0.
 * - Feature columns: every other column unless `featureColumns` names some. A column whose every value
 *   is a number is numeric; any other column is categorical and one-hot encoded (one 0/1 feature per
 *   distinct value, named `column=value`), up to MAX_CATEGORIES values, else refused: a free-text or id
 *   column is almost always a mistake to feed a model.
 * - An empty cell in a used column is refused with its row and column named, unless `dropIncompleteRows`
 *   is set, which drops every such row (imputing values would be a modelling decision made silently).
 * - Rows are split by a fixed pseudo-random permutation (sorted files, like the penguins by species,
 *   would otherwise put whole classes in the held-out part); `heldOutFraction` of them are held out.
 * - Numeric features are standardised with the training rows' mean and standard deviation (a constant
 *   column keeps std 1), applied before storing and recorded in the spec's `standardization`.
 */
import { DatasetError } from './datasetError.ts'
import { fixedPermutation, heldOutCount, type PreparedDataset } from './prepared.ts'

export const MAX_CATEGORIES = 32
export const MAX_CLASSES = 256
export const DEFAULT_HELD_OUT_FRACTION = 0.2

export interface CsvOptions {
  labelColumn: string
  featureColumns?: string[]
  /** Share of rows held out for evaluation, in (0, 0.5]; 0.2 unless given. */
  heldOutFraction?: number
  /** Drop rows with an empty cell in a used column instead of refusing the file. */
  dropIncompleteRows?: boolean
  /** Name of the file in messages. */
  fileName?: string
}

export interface CsvDataset extends PreparedDataset {
  featureNames: string[]
  labelNames: string[]
  /** Spreadsheet row numbers of the rows dropped for empty cells (only with dropIncompleteRows). */
  droppedRows: number[]
}

/** RFC 4180 records: quoted fields with doubled quotes, CRLF or LF line ends; a UTF-8 BOM is skipped. */
export function parseCsvRecords(text: string, fileName = 'CSV'): string[][] {
  const records: string[][] = []
  let record: string[] = []
  let field = ''
  let quoted = false
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0
  let line = 1
  let quoteLine = 0
  const endRecord = () => {
    record.push(field)
    field = ''
    // A blank line (one empty field) separates nothing: skip it.
    if (!(record.length === 1 && record[0] === '')) records.push(record)
    record = []
  }
  for (; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"'
          i++
        } else quoted = false
      } else {
        if (c === '\n') line++
        field += c
      }
    } else if (c === '"') {
      if (field !== '') throw new DatasetError('bad_csv', `${fileName}: row ${line}: a quote inside an unquoted cell`)
      quoted = true
      quoteLine = line
    } else if (c === ',') {
      record.push(field)
      field = ''
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++
      endRecord()
      line++
    } else field += c
  }
  if (quoted) throw new DatasetError('bad_csv', `${fileName}: row ${quoteLine}: a quoted cell is never closed`)
  if (field !== '' || record.length > 0) endRecord()
  return records
}

const isNumber = (cell: string) => cell.trim() !== '' && Number.isFinite(Number(cell.trim()))

function decodeUtf8(bytes: Uint8Array, fileName: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new DatasetError('not_utf8', `${fileName}: not UTF-8 text`)
  }
}

/** Converts a CSV file into training and held-out IDX pairs (see the module comment for every rule). */
export function csvToDataset(input: Uint8Array | string, options: CsvOptions): CsvDataset {
  const fileName = options.fileName ?? 'CSV'
  const text = typeof input === 'string' ? input : decodeUtf8(input, fileName)
  const records = parseCsvRecords(text, fileName)
  if (records.length === 0) throw new DatasetError('empty_file', `${fileName}: the file is empty`)
  const header = records[0]!.map((h) => h.trim())
  const quoteList = (names: string[]) => names.map((n) => `"${n}"`).join(', ')
  const columnIndex = (name: string) => {
    const index = header.indexOf(name)
    if (index < 0) throw new DatasetError('unknown_column', `${fileName}: no column "${name}"; the header has ${quoteList(header)}`)
    return index
  }
  const duplicate = header.find((h, i) => header.indexOf(h) !== i)
  if (duplicate !== undefined) throw new DatasetError('bad_csv', `${fileName}: row 1: column "${duplicate}" appears twice in the header`)
  const labelIndex = columnIndex(options.labelColumn)
  const featureIndices = (options.featureColumns ?? header.filter((_, i) => i !== labelIndex)).map(columnIndex)
  if (featureIndices.includes(labelIndex)) throw new DatasetError('bad_csv', `${fileName}: the label column "${options.labelColumn}" cannot also be a feature`)
  if (featureIndices.length === 0) throw new DatasetError('bad_csv', `${fileName}: no feature columns besides the label "${options.labelColumn}"`)
  const fraction = options.heldOutFraction ?? DEFAULT_HELD_OUT_FRACTION
  if (!(fraction > 0 && fraction <= 0.5)) throw new DatasetError('bad_csv', `heldOutFraction ${fraction} is not in (0, 0.5]`)

  // Rows with their spreadsheet numbers; ragged rows and empty cells are refused (or dropped) here.
  const used = [labelIndex, ...featureIndices]
  const rows: { row: number; cells: string[] }[] = []
  const droppedRows: number[] = []
  for (let r = 1; r < records.length; r++) {
    const cells = records[r]!
    const row = r + 1
    if (cells.length !== header.length) {
      throw new DatasetError('bad_csv', `${fileName}: row ${row} has ${cells.length} cells, the header has ${header.length}`)
    }
    const empty = used.find((c) => cells[c]!.trim() === '')
    if (empty !== undefined) {
      if (options.dropIncompleteRows) {
        droppedRows.push(row)
        continue
      }
      throw new DatasetError('empty_cell', `${fileName}: row ${row}, column "${header[empty]}": empty cell (fill it in, or drop incomplete rows)`)
    }
    rows.push({ row, cells })
  }
  if (rows.length < 2) {
    throw new DatasetError('too_few_rows', `${fileName}: ${rows.length} complete example row(s); at least 2 are needed (one to train on, one to hold out)`)
  }

  // Classes: the label column's distinct values, sorted.
  const labelValues = [...new Set(rows.map((r) => r.cells[labelIndex]!.trim()))]
  if (labelValues.every(isNumber)) labelValues.sort((a, b) => Number(a) - Number(b))
  else labelValues.sort()
  if (labelValues.length > MAX_CLASSES) {
    throw new DatasetError('too_many_classes', `${fileName}: column "${options.labelColumn}" has ${labelValues.length} distinct values; at most ${MAX_CLASSES} classes`)
  }
  const classOf = new Map(labelValues.map((v, i) => [v, i]))

  // Features: numeric columns as they are, categorical ones one-hot.
  type Feature = { column: number; name: string; category?: string }
  const features: Feature[] = []
  for (const column of featureIndices) {
    const values = rows.map((r) => r.cells[column]!.trim())
    if (values.every(isNumber)) {
      features.push({ column, name: header[column]! })
      continue
    }
    const categories = [...new Set(values)].sort()
    if (categories.length > MAX_CATEGORIES) {
      const example = rows.find((r) => !isNumber(r.cells[column]!))!
      throw new DatasetError(
        'too_many_categories',
        `${fileName}: column "${header[column]}" is not numeric (row ${example.row}: "${example.cells[column]!.trim()}") and has ${categories.length} distinct values; at most ${MAX_CATEGORIES} are one-hot encoded`,
      )
    }
    for (const category of categories) features.push({ column, name: `${header[column]}=${category}`, category })
  }

  // A fixed permutation of the rows: the last `held` of it are held out.
  const order = fixedPermutation(rows.length)
  const held = heldOutCount(rows.length, fraction)
  const trainRows = order.slice(0, rows.length - held).map((i) => rows[i]!)
  const heldOutRows = order.slice(rows.length - held).map((i) => rows[i]!)

  const raw = (cells: string[], f: Feature) => (f.category === undefined ? Number(cells[f.column]!.trim()) : cells[f.column]!.trim() === f.category ? 1 : 0)
  const mean = features.map((f) => (f.category === undefined ? trainRows.reduce((s, r) => s + raw(r.cells, f), 0) / trainRows.length : 0))
  const std = features.map((f, j) => {
    if (f.category !== undefined) return 1
    const variance = trainRows.reduce((s, r) => s + (raw(r.cells, f) - mean[j]!) ** 2, 0) / trainRows.length
    // Stored in float32: a spread that rounds to 0 would divide by zero.
    return Math.fround(Math.sqrt(variance)) > 0 ? Math.sqrt(variance) : 1
  })
  const encode = (part: typeof rows) => {
    const x = new Float32Array(part.length * features.length)
    const y = new Uint8Array(part.length)
    part.forEach((r, i) => {
      features.forEach((f, j) => (x[i * features.length + j] = (raw(r.cells, f) - mean[j]!) / std[j]!))
      y[i] = classOf.get(r.cells[labelIndex]!.trim())!
    })
    return { images: { shape: [part.length, features.length], data: x }, labels: { shape: [part.length], data: y } }
  }
  return {
    train: encode(trainRows),
    heldOut: encode(heldOutRows),
    classes: labelValues.length,
    itemShape: [features.length],
    scale: 1,
    labelNames: labelValues,
    featureNames: features.map((f) => f.name),
    standardization: { mean, std },
    droppedRows,
  }
}
