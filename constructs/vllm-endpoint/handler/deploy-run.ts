import { DeploymentConfig, SageMakerClient } from '@aws-sdk/client-sagemaker';
import {
  applyDeployment,
  DeployError,
  DeploymentTarget,
  deploymentSubject,
  DeployTerms,
  planDeployment,
  SageMakerSender,
  waitForDeployment,
} from '../../../lib/deploy';
import { DEPLOY_RUN_ENV } from '../deploy-contract';

/**
 * The Deploy stage's function: the deployment `tuneyard deploy --wait` makes (lib/deploy.ts), in
 * time slices that fit a Lambda invocation. `start` plans and sends the writes, then waits;
 * `wait` waits on. Each invocation polls every `pollSeconds` until the deployment settles or its
 * slice (the invocation's time less a margin, ~13 minutes) runs out, and returns `in-progress`
 * then; the state machine invokes `wait` again until the total budget (`maxPolls` × `pollSeconds`
 * from the start) is spent.
 *
 * Errors (their names are the stage's Step Functions errors, {@link DEPLOY_ERRORS}):
 * `Tuneyard.DeployTargetUnknown` (another endpoint, or the endpoint is gone),
 * `Tuneyard.DeployNotApproved` (the package is not Approved),
 * `Tuneyard.DeployFailed` (refused before any write, a SageMaker call refused, or the component or
 * endpoint Failed), `Tuneyard.DeployRolledBack`, `Tuneyard.DeployTimedOut`. Each message says what
 * happened and how to go on (the model is registered: `tuneyard deploy` resumes the deployment).
 */

/** What the function knows of its endpoint, from its environment. */
export interface DeployRunSettings {
  /** The only endpoint it deploys to. */
  readonly endpointName: string;
  /** The base component (inference-component endpoints; adapters go on it). */
  readonly baseComponentName?: string;
  /** The endpoint's DeploymentConfig, for UpdateEndpoint (single-model endpoints). */
  readonly deploymentConfig?: DeploymentConfig;
  readonly pollSeconds: number;
  readonly maxPolls: number;
}

/** `start`: the run's deployment request (`$.plan.deploy`), its registered package and model folder. */
export interface DeployStartEvent {
  readonly action: 'start';
  readonly runId: string;
  /** How Register registered the package (`$.plan.modelApprovalStatus`): only an approved model is deployed. */
  readonly modelApprovalStatus: string;
  readonly deploy: { readonly endpointName: string; readonly adapterName?: string | null };
  /** Register's `ModelPackageArn`. */
  readonly modelPackageArn: string;
  /** The run's model folder (`$.plan.modelArtifactS3Uri`). */
  readonly modelData: string;
}

/** `wait`: the previous invocation's result. */
export interface DeployWaitEvent {
  readonly action: 'wait';
  readonly deployment: DeployRunResult;
}

/** Where the deployment stands (the stage keeps it at `$.deployment`). */
export interface DeployRunResult extends DeploymentTarget {
  readonly outcome: 'deployed' | 'in-progress';
  /** The last status read (InService, Creating, Updating, ...). */
  readonly status: string;
  readonly message: string;
  readonly form: 'single-model' | 'inference-components';
  readonly modelPackageArn: string;
  readonly adapterName?: string;
  /** What was loaded: the adapter tarball or the merged model folder. */
  readonly artifact: string;
  /** The writes the start sent (CreateModel, CreateEndpointConfig, UpdateEndpoint, Create/UpdateInferenceComponent). */
  readonly sent: string[];
  readonly notes: string[];
  /** When the wait gives up (epoch milliseconds). */
  readonly deadline: number;
}

/** What the function calls and reads the time from (tests pass fakes). */
export interface DeployRunDeps {
  readonly sagemaker: SageMakerSender;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
  /** The invocation's time left (Lambda's `getRemainingTimeInMillis`). */
  readonly remainingMs: () => number;
}

/** Time kept back from each invocation for the last read and the answer. */
const MARGIN_MS = 2 * 60_000;

const TERMS: DeployTerms = {
  deployer: 'the Deploy stage',
  adapterOption: "the run request's deploy.adapterName",
  endpointNotFoundFix: "the pipeline's endpoint was deleted: deploy the plane again (`npx cdk deploy`) to recreate it",
};

export async function deployRun(event: DeployStartEvent | DeployWaitEvent, settings: DeployRunSettings, deps: DeployRunDeps): Promise<DeployRunResult> {
  if (event.action === 'wait') {
    const previous = event.deployment;
    return waitSlice(previous, settings, deps, true);
  }
  const { deploy, modelPackageArn, modelData } = event;
  if (deploy.endpointName !== settings.endpointName) {
    throw new DeployError('targetUnknown', `The run asked to deploy to ${deploy.endpointName}; this pipeline deploys to ${settings.endpointName}. Ask for ${settings.endpointName}, or leave deploy out.`);
  }
  if (event.modelApprovalStatus !== 'Approved') {
    throw new DeployError(
      'notApproved',
      `Run ${event.runId} registered its model as ${event.modelApprovalStatus}; only approved models are deployed. Set autoApprove in the request, or approve the package and deploy it with \`tuneyard deploy ${modelPackageArn} --endpoint ${settings.endpointName} --approve\`.`,
    );
  }
  // Adapter names matter to inference-component endpoints only (PlanRun asks for one there).
  const adapterName = settings.baseComponentName ? (deploy.adapterName ?? undefined) : undefined;
  const again = resumeCommand(modelPackageArn, settings.endpointName, adapterName);
  const started = deps.now();
  const plan = await sageMakerCall(again, () =>
    planDeployment(deps.sagemaker, { endpointName: settings.endpointName, adapterName, modelPackageArn, modelData, baseComponentName: settings.baseComponentName, deploymentConfig: settings.deploymentConfig }, TERMS),
  );
  await sageMakerCall(again, () => applyDeployment(deps.sagemaker, plan));
  const deployment: DeployRunResult = {
    endpointName: plan.endpointName,
    waitFor: plan.waitFor,
    form: plan.form,
    modelPackageArn,
    ...(adapterName ? { adapterName } : {}),
    artifact: plan.artifact,
    sent: plan.steps.map((s) => s.action),
    notes: plan.notes,
    deadline: started + settings.maxPolls * settings.pollSeconds * 1000,
    outcome: 'in-progress',
    status: 'Unknown',
    message: '',
  };
  // Right after a write the status may not have left InService yet; with nothing sent it is read at once.
  return waitSlice(deployment, settings, deps, plan.steps.length > 0);
}

async function waitSlice(deployment: DeployRunResult, settings: DeployRunSettings, deps: DeployRunDeps, sleepFirst: boolean): Promise<DeployRunResult> {
  const intervalMs = settings.pollSeconds * 1000;
  const slicePolls = Math.max(1, Math.floor((deps.remainingMs() - MARGIN_MS) / intervalMs));
  const budgetPolls = Math.max(1, Math.ceil((deployment.deadline - deps.now()) / intervalMs));
  const again = resumeCommand(deployment.modelPackageArn, deployment.endpointName, deployment.adapterName);
  const read = await sageMakerCall(again, () =>
    waitForDeployment(deps.sagemaker, deployment, { sleep: deps.sleep, polls: Math.min(slicePolls, budgetPolls), intervalMs, sleepFirst }),
  );
  switch (read.outcome) {
    case 'deployed':
      return { ...deployment, ...read, outcome: 'deployed' };
    case 'failed':
      throw new DeployError(
        'failed',
        `${sentence(read.message)} The model stays registered (${deployment.modelPackageArn}): find the cause in the endpoint's logs (/aws/sagemaker/Endpoints/${deployment.endpointName}), fix it, and deploy again with \`${again}\`.`,
      );
    case 'rolled-back':
      throw new DeployError(
        'rolledBack',
        `${sentence(read.message)} The previous model serves again; look at the endpoint's rollback alarms and logs (/aws/sagemaker/Endpoints/${deployment.endpointName}) to see why, then deploy again with \`${again}\` or keep the previous model.`,
      );
    case 'in-progress':
      if (deps.now() >= deployment.deadline) {
        throw new DeployError(
          'timedOut',
          `${deploymentSubject(deployment)} is still ${read.status} after ${Math.round((settings.maxPolls * settings.pollSeconds) / 60)} minutes: SageMaker finishes or rolls back the deployment on its own. Follow it with \`${again}\` (it sends nothing twice).`,
        );
      }
      return { ...deployment, ...read, outcome: 'in-progress' };
  }
}

/** The message as a sentence: ends in one full stop. */
function sentence(message: string): string {
  return message.replace(/\.*$/, '.');
}

function resumeCommand(modelPackageArn: string, endpointName: string, adapterName?: string): string {
  return `tuneyard deploy ${modelPackageArn} --endpoint ${endpointName}${adapterName ? ` --adapter ${adapterName}` : ''} --wait`;
}

/** A SageMaker error (refused call, access denied, throttled past the SDK's retries) as DeployFailed with the way on. */
async function sageMakerCall<T>(again: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof DeployError) {
      if (e.kind === 'targetUnknown' || e.kind === 'notApproved') throw e;
      throw new DeployError(e.kind, `${sentence(e.message)} Once that is fixed, deploy the registered model with \`${again}\`.`);
    }
    const err = e as Error;
    throw new DeployError('failed', `A SageMaker call of the deployment failed (${err.name}: ${err.message}). Once that is fixed, deploy the registered model with \`${again}\`.`);
  }
}

/** Reads the function's settings from its environment. */
export function settingsFromEnvironment(env: NodeJS.ProcessEnv): DeployRunSettings {
  const required = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`the Deploy function is misconfigured: environment variable ${name} is not set`);
    return value;
  };
  const config = env[DEPLOY_RUN_ENV.deploymentConfig];
  return {
    endpointName: required(DEPLOY_RUN_ENV.endpointName),
    baseComponentName: env[DEPLOY_RUN_ENV.baseComponentName] || undefined,
    deploymentConfig: config ? (JSON.parse(config) as DeploymentConfig) : undefined,
    pollSeconds: Number(required(DEPLOY_RUN_ENV.pollSeconds)),
    maxPolls: Number(required(DEPLOY_RUN_ENV.maxPolls)),
  };
}

// SageMaker's control plane throttles at a few calls a second: the SDK retries with backoff up to 10 times.
const sagemaker = new SageMakerClient({ maxAttempts: 10 });

/** The Lambda entry point. */
export async function handler(event: DeployStartEvent | DeployWaitEvent, context: { getRemainingTimeInMillis(): number }): Promise<DeployRunResult> {
  return deployRun(event, settingsFromEnvironment(process.env), {
    sagemaker,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: () => Date.now(),
    remainingMs: () => context.getRemainingTimeInMillis(),
  });
}
