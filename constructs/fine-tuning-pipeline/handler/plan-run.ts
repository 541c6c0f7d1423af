import { resolveRecipe } from '../../../lib/recipe';
import { parseRunRequest, planRun, PlanSettings, RunPlan, RunRequest } from '../../../lib/run-request';

/** The input of the PlanRun step: the execution input and the execution's name. */
export interface PlanRunEvent {
  readonly request: unknown;
  readonly executionName?: string;
}

/** What the pipeline's later states read: `$.request`, `$.plan`, `$.datasetCheck`. */
export interface PlanRunResult {
  /** The validated request with every default applied. */
  readonly request: RunRequest;
  readonly plan: RunPlan;
  /** The dataset validator's input. */
  readonly datasetCheck: { datasetName: string; datasetSha256: string; method: string; maxLength: number };
}

/** What the plane tells PlanRun besides the request. */
export interface PlanRunEnvironment extends PlanSettings {
  /** Whether the pipeline has a Deploy stage (a request that asks for a deployment is refused without one). */
  readonly deployStage: boolean;
}

/** The request cannot run; the message names each field and the fix. Never retried. */
export class RunRequestInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunRequestInvalid';
  }
}

/**
 * Re-validates the RunRequest (the CLI validated it before starting the execution, but anyone
 * with StartExecution can start one) and plans the run.
 */
export function planRunStep(event: PlanRunEvent, env: PlanRunEnvironment): PlanRunResult {
  let request: RunRequest;
  let plan: RunPlan;
  try {
    request = parseRunRequest(event?.request);
    plan = planRun(request, env);
  } catch (e) {
    if ((e as Error).name === 'RunRequestError') throw new RunRequestInvalid((e as Error).message);
    throw e;
  }
  if (request.deploy && !env.deployStage) {
    throw new RunRequestInvalid(
      `deploy: this plane's pipeline has no Deploy stage, so the run could not deploy to "${request.deploy.endpointName}". ` +
        'Remove deploy (and deploy the registered model yourself), or add a Deploy stage to the pipeline.',
    );
  }
  const recipe = resolveRecipe(request.recipe);
  return {
    request,
    plan,
    datasetCheck: {
      datasetName: request.dataset.name,
      datasetSha256: request.dataset.sha256,
      method: recipe.method,
      maxLength: recipe.maxLength,
    },
  };
}

/** Reads the plane's settings from the function's environment. */
export function environmentSettings(env: NodeJS.ProcessEnv): PlanRunEnvironment {
  const required = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`PlanRun is misconfigured: environment variable ${name} is not set`);
    return value;
  };
  return {
    bucketName: required('TUNEYARD_BUCKET_NAME'),
    volumeKmsKeyArn: required('TUNEYARD_VOLUME_KMS_KEY_ARN'),
    outputKmsKeyArn: required('TUNEYARD_OUTPUT_KMS_KEY_ARN'),
    allowHubModels: env.TUNEYARD_ALLOW_HUB_MODELS === 'true',
    jobNamePrefix: env.TUNEYARD_JOB_NAME_PREFIX || undefined,
    deployStage: env.TUNEYARD_DEPLOY_STAGE === 'enabled',
  };
}

/** The Lambda entry point. */
export async function handler(event: PlanRunEvent): Promise<PlanRunResult> {
  return planRunStep(event, environmentSettings(process.env));
}
