/**
 * Why a data set was refused. `code` is stable for programs and tests (the job-creation route answers it
 * under `invalid_dataset`); the message says, for a person, what is wrong and where (file, row, column).
 */
export type DatasetErrorCode =
  | 'bad_idx'
  | 'count_mismatch'
  | 'label_out_of_range'
  | 'bad_shape'
  | 'too_large'
  | 'empty_file'
  | 'bad_csv'
  | 'unknown_column'
  | 'empty_cell'
  | 'too_many_categories'
  | 'too_many_classes'
  | 'too_few_rows'
  | 'not_utf8'
  | 'vocabulary_too_large'
  | 'text_too_short'

export class DatasetError extends Error {
  override name = 'DatasetError'
  constructor(
    readonly code: DatasetErrorCode,
    message: string,
  ) {
    super(message)
  }
}
