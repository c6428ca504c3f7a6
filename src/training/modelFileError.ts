/**
 * Why an uploaded model (model.json and its weight files, as tfjs `model.save()` writes them) was refused.
 * `code` is stable for programs; the message names the file, layer or weight.
 */
export type ModelFileErrorCode =
  | 'bad_model_json'
  | 'bad_topology'
  | 'unknown_layer'
  | 'nondeterministic_layer'
  | 'bad_output'
  | 'missing_weight_file'
  | 'wrong_byte_length'
  | 'not_float32'
  | 'weight_mismatch'
  | 'unsupported_by_bundle'
  | 'model_data_mismatch'

export class ModelFileError extends Error {
  override name = 'ModelFileError'
  constructor(
    readonly code: ModelFileErrorCode,
    message: string,
  ) {
    super(message)
  }
}
