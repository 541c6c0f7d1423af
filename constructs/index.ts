export * from './dataset-store';
export * from './dataset-validator';
