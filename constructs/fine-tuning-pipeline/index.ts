export * from './fine-tuning-pipeline';
