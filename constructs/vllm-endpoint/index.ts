export * from './deployment';
export * from './image';
export * from './model-data';
export * from './vllm-endpoint';
export * from './deploy-stage';
