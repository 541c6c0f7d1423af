export * from './fine-tuning-pipeline';
// In FineTuningPipelineProps.planSettings: part of the constructs' API.
export type { PlanSettings } from '../../lib/run-request';
