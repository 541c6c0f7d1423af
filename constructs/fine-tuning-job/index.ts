export * from './fine-tuning-job';
