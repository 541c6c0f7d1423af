export * from './plane-alarms';
