export * from './training-image';
