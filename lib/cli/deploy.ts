import {
  DeployError,
  DeploymentPlan,
  DeployRequest,
  deploymentSubject,
  DeployTerms,
  planDeployment as planWith,
  SageMakerSender,
  waitForDeployment as waitWith,
} from '../deploy';
import { DEPLOY_WAIT } from '../run-request';
import { CliError } from './errors';
import { duration } from './format';

export { applyDeployment, deploymentName } from '../deploy';
export type { DeploymentPlan, DeployRequest, DeployStep } from '../deploy';

/**
 * `tuneyard deploy`: the SageMaker calls of lib/deploy.ts, which the pipeline's Deploy stage makes
 * too, for a registered model package; refusals name the CLI's flags.
 */

/** Polls of `--wait` and the wait between two: as the Deploy stage ({@link DEPLOY_WAIT}). */
export const WAIT_POLLS = DEPLOY_WAIT.maxPolls;
export const WAIT_INTERVAL_MS = DEPLOY_WAIT.pollSeconds * 1000;

const CLI_TERMS: DeployTerms = {
  deployer: 'tuneyard deploy',
  adapterOption: '--adapter',
  endpointNotFoundFix: "check --endpoint, --region and --profile (the plane's EndpointName output names its endpoint)",
};

/** Reads the endpoint and decides the calls that deploy the package to it. Writes nothing. */
export async function planDeployment(sagemaker: SageMakerSender, request: DeployRequest): Promise<DeploymentPlan> {
  try {
    return await planWith(sagemaker, request, CLI_TERMS);
  } catch (e) {
    if (e instanceof DeployError) throw new CliError(e.message);
    throw e;
  }
}

/** How a deployment ended, as `--wait` saw it. */
export interface DeployOutcome {
  readonly outcome: 'deployed' | 'failed' | 'rolled-back' | 'timed-out';
  /** The last status read (InService, Failed, Updating, ...). */
  readonly status: string;
  readonly message: string;
}

export interface WaitOptions {
  readonly sleep: (ms: number) => Promise<void>;
  /** Called with each status read that differs from the previous one. */
  readonly onStatus?: (status: string) => void;
  readonly polls?: number;
  readonly intervalMs?: number;
}

/**
 * Polls the adapter component or the endpoint until the deployment ends (lib/deploy.ts
 * `waitForDeployment`); after `polls` polls it gives up, and SageMaker finishes or rolls back on its own.
 */
export async function waitForDeployment(sagemaker: SageMakerSender, plan: DeploymentPlan, options: WaitOptions): Promise<DeployOutcome> {
  const polls = options.polls ?? WAIT_POLLS;
  const intervalMs = options.intervalMs ?? WAIT_INTERVAL_MS;
  // With nothing sent the status is read at once.
  const read = await waitWith(sagemaker, plan, { sleep: options.sleep, onStatus: options.onStatus, polls, intervalMs, sleepFirst: plan.steps.length > 0 });
  if (read.outcome !== 'in-progress') return { ...read, outcome: read.outcome };
  return {
    outcome: 'timed-out',
    status: read.status,
    message: `${deploymentSubject(plan)} is still ${read.status} after ${duration(polls * intervalMs)}: SageMaker finishes or rolls back the deployment on its own; wait again with the same command (it sends nothing twice)`,
  };
}
