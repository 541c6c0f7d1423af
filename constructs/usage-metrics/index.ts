export * from './usage-metrics';
export { DEFAULT_USAGE_NAMESPACE, USAGE_METRICS } from './usage-contract';
