export * from './dataset-validation-function';
export type {
  StoredValidationReport,
  ValidateDatasetInput,
  ValidateDatasetOutput,
} from './handler';
