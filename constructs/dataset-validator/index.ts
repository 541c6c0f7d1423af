export * from './dataset-validation-function';
