export * from './dataset-store';
