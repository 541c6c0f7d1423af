export { DATASET_DIALECTS, DATASET_FORMATS, detectDialect, detectFormat, formatOf, methodError, PREFERENCE_FORMATS } from './formats';
export type { DatasetDialect, DatasetError, DatasetErrorCode, DatasetFormat, Message, Role, ToolCall } from './formats';
export { RowHasher, RowHashes } from './row-hashes';
export { DatasetValidator, formatError, reportForMethod, validateStream } from './validator';
export type { DatasetReport, DatasetValidatorOptions, TokenStats } from './validator';
