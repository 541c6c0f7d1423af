export { DATASET_FORMATS, detectFormat, methodError, PREFERENCE_FORMATS } from './formats';
export type { DatasetError, DatasetErrorCode, DatasetFormat } from './formats';
export { RowHasher, RowHashes } from './row-hashes';
export { DatasetValidator, formatError, reportForMethod, validateStream } from './validator';
export type { DatasetReport, DatasetValidatorOptions, TokenStats } from './validator';
