export * from './notification-topic';
