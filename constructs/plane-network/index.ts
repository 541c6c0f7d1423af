export * from './plane-network';
