export * from './metric-sources';
export * from './plane-dashboard';
export * from './runbook';
