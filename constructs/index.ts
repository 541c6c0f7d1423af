export * from './dataset-store';
export * from './dataset-validator';
export * from './plane-alarms';
export * from './plane-dashboard';
