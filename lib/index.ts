export * from '../constructs';
export * from './config';
export * from './datasets';
export * from './errors';
export * from './fine-tuning-plane-stack';
export * from './layout';
export * from './nag';
