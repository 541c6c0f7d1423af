// The public entry of the `tuneyard` package: the constructs, the composed plane stack and its
// configuration, the compliance packs, and the contracts a user's code shares with the plane
// (run requests, recipes, dataset formats and validation, the bucket layout, instance sizing).
// The CLI, the Lambda handlers and the helpers the constructs share stay internal.

// Constructs
export * from '../constructs';
// Beside the constructs, outside their jsii API (the Python package): the dataset validator's
// contract and the serving-fit helpers.
export type { StoredValidationReport, ValidateDatasetInput, ValidateDatasetOutput } from '../constructs/dataset-validator/handler';
export * from '../constructs/vllm-endpoint/model-fit';

// The composed plane and its configuration
export { FineTuningPlaneStack, type FineTuningPlaneStackProps } from './fine-tuning-plane-stack';
export { CONFIG_CONTEXT_KEY, CONFIG_FILE_CONTEXT_KEY, loadPlaneConfig, parsePlaneConfig, type PlaneConfig, PlaneConfigSchema } from './config';

// The compliance packs every Tuneyard stack passes
export { addCompliancePacks, compliancePacks } from './nag';

// Errors
export { TuneyardValidationError } from './errors';

// Run requests and recipes (the pipeline's input)
export {
  DEFAULT_JOB_NAME_PREFIX,
  GATE_REJECTED_ERROR,
  MAX_RUNTIME_HOURS,
  parseRunRequest,
  type RunRequest,
  RunRequestError,
  type RunRequestInput,
  RunRequestSchema,
  runIdFor,
} from './run-request';
export { METHODS, type Method, parseRecipe, type Recipe, recipeProblems, RecipeSchema, type ResolvedRecipe, resolveRecipe } from './recipe';
export { type GraderConfig, graderProblems, type GraderProblem, GradersError, GRADER_TYPES, parseGraders } from './graders';

// Dataset formats and validation, and where datasets live in the bucket
export * from './datasets';
export * from './layout';

// GPU instances and memory estimates
export * from './instances';
export * from './preflight';
