export { DATASET_FORMATS, detectFormat, methodError, PREFERENCE_FORMATS, TRAINING_METHODS } from './formats';
export type { DatasetError, DatasetErrorCode, DatasetFormat, TrainingMethod } from './formats';
export { RowHasher, RowHashes } from './row-hashes';
export { DatasetValidator, formatError, reportForMethod, validateStream } from './validator';
export type { DatasetReport, DatasetValidatorOptions, TokenStats } from './validator';
