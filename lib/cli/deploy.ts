import { createHash } from 'node:crypto';
import {
  ContainerDefinition,
  CreateEndpointConfigCommand,
  CreateEndpointConfigCommandInput,
  CreateInferenceComponentCommand,
  CreateInferenceComponentCommandInput,
  CreateModelCommand,
  CreateModelCommandInput,
  DescribeEndpointCommand,
  DescribeEndpointCommandOutput,
  DescribeEndpointConfigCommand,
  DescribeEndpointConfigCommandOutput,
  DescribeInferenceComponentCommand,
  DescribeInferenceComponentCommandOutput,
  DescribeModelCommand,
  DescribeModelCommandOutput,
  ListInferenceComponentsCommand,
  SageMakerClient,
  UpdateEndpointCommand,
  UpdateEndpointCommandInput,
  UpdateInferenceComponentCommand,
  UpdateInferenceComponentCommandInput,
} from '@aws-sdk/client-sagemaker';
import { duration } from './format';
import { CliError, isNotFound } from './errors';
import { MODEL_OUTPUT } from '../layout';
import { DEPLOY_WAIT } from '../run-request';

/**
 * `tuneyard deploy`: the same SageMaker calls as the pipeline's Deploy stage
 * (constructs/vllm-endpoint/deploy-stage.ts), made from the CLI for a registered model package.
 * A plan is built with reads only, so every refusal happens before anything is written.
 */

/** Polls of `--wait` and the wait between two: as the Deploy stage ({@link DEPLOY_WAIT}). */
export const WAIT_POLLS = DEPLOY_WAIT.maxPolls;
export const WAIT_INTERVAL_MS = DEPLOY_WAIT.pollSeconds * 1000;

const NAME_PATTERN = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/** `<endpoint>-<first 8 hex of sha256(package ARN)>`, at most 63 characters: the model's and endpoint config's name. */
export function deploymentName(endpointName: string, modelPackageArn: string): string {
  const hash = createHash('sha256').update(modelPackageArn).digest('hex').slice(0, 8);
  return `${endpointName.slice(0, 63 - 9)}-${hash}`;
}

/** One SageMaker write of a deployment, as sent. */
export type DeployStep =
  | { readonly action: 'CreateModel'; readonly input: CreateModelCommandInput }
  | { readonly action: 'CreateEndpointConfig'; readonly input: CreateEndpointConfigCommandInput }
  | { readonly action: 'UpdateEndpoint'; readonly input: UpdateEndpointCommandInput }
  | { readonly action: 'CreateInferenceComponent'; readonly input: CreateInferenceComponentCommandInput }
  | { readonly action: 'UpdateInferenceComponent'; readonly input: UpdateInferenceComponentCommandInput };

export interface DeployRequest {
  readonly endpointName: string;
  /** The adapter component's name (inference-component endpoints). */
  readonly adapterName?: string;
  readonly modelPackageArn: string;
  /** The package's model folder (`.../output/model/`), ending in `/`. */
  readonly modelData: string;
}

export interface DeploymentPlan {
  readonly form: 'single-model' | 'inference-components';
  readonly endpointName: string;
  /** The writes, in order; empty when the endpoint already serves the model or is being updated to it. */
  readonly steps: DeployStep[];
  /** What `--wait` polls: the adapter component, or the endpoint until it runs `endpointConfigName`. */
  readonly waitFor: { readonly component: string } | { readonly endpointConfigName: string };
  /** The S3 location the endpoint will load: the adapter tarball or the merged model folder. */
  readonly artifact: string;
  /** Why some steps were left out, and what the endpoint keeps (shown to the user). */
  readonly notes: string[];
}

/** Reads the endpoint and decides the calls that deploy the package to it. Writes nothing. */
export async function planDeployment(sagemaker: SageMakerClient, request: DeployRequest): Promise<DeploymentPlan> {
  const { endpointName } = request;
  if (!NAME_PATTERN.test(endpointName)) {
    throw new CliError(`endpoint name "${endpointName}" is invalid: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit`);
  }
  if (!request.modelData.startsWith('s3://') || !request.modelData.endsWith('/')) {
    throw new CliError(
      `model package ${request.modelPackageArn} has model data ${request.modelData}, not an S3 folder: tuneyard deploy serves the pipeline's uncompressed model/ folder (${MODEL_OUTPUT.adapterArchive}, ${MODEL_OUTPUT.fullWeights}); deploy other packages yourself`,
    );
  }
  const endpoint = await describeEndpoint(sagemaker, endpointName);
  const config = await sagemaker.send(new DescribeEndpointConfigCommand({ EndpointConfigName: endpoint.EndpointConfigName }));
  const variants = config.ProductionVariants ?? [];
  if (variants.length !== 1) {
    throw new CliError(
      `endpoint ${endpointName} has ${variants.length} production variants (config ${config.EndpointConfigName}): tuneyard deploy updates single-variant endpoints, as VllmEndpoint creates them`,
    );
  }
  return variants[0].ModelName
    ? planSingleModel(sagemaker, request, endpoint, config, variants[0].ModelName)
    : planAdapter(sagemaker, request, endpoint);
}

async function describeEndpoint(sagemaker: SageMakerClient, endpointName: string): Promise<DescribeEndpointCommandOutput> {
  try {
    return await sagemaker.send(new DescribeEndpointCommand({ EndpointName: endpointName }));
  } catch (e) {
    if (isNotFound(e)) throw new CliError(`endpoint ${endpointName} not found: check --endpoint, --region and --profile (the plane's EndpointName output names its endpoint)`);
    throw e;
  }
}

async function planAdapter(sagemaker: SageMakerClient, request: DeployRequest, endpoint: DescribeEndpointCommandOutput): Promise<DeploymentPlan> {
  const { endpointName, adapterName } = request;
  if (!adapterName) {
    throw new CliError(`endpoint ${endpointName} serves adapters as inference components: pass --adapter NAME (the adapter component's name; an existing one is updated)`);
  }
  if (!NAME_PATTERN.test(adapterName)) {
    throw new CliError(`adapter name "${adapterName}" is invalid: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit`);
  }
  if (endpoint.EndpointStatus !== 'InService') {
    throw new CliError(`endpoint ${endpointName} is ${endpoint.EndpointStatus}: deploy when it is InService`);
  }
  const components: DescribeInferenceComponentCommandOutput[] = [];
  let token: string | undefined;
  do {
    const page = await sagemaker.send(new ListInferenceComponentsCommand({ EndpointNameEquals: endpointName, NextToken: token }));
    for (const summary of page.InferenceComponents ?? []) {
      components.push(await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: summary.InferenceComponentName })));
    }
    token = page.NextToken;
  } while (token);
  const bases = components.filter((c) => !c.Specification?.BaseInferenceComponentName).map((c) => c.InferenceComponentName!);
  if (bases.length !== 1) {
    throw new CliError(
      bases.length === 0
        ? `endpoint ${endpointName} has no base inference component (one without BaseInferenceComponentName) to load the adapter on: deploy the plane's serving with \`npx cdk deploy\``
        : `endpoint ${endpointName} has ${bases.length} base inference components (${bases.join(', ')}): tuneyard deploy needs exactly one to put the adapter on`,
    );
  }
  const base = bases[0];
  const artifact = request.modelData + MODEL_OUTPUT.adapterArchive;
  const Specification = { BaseInferenceComponentName: base, Container: { ArtifactUrl: artifact } };
  const existing = components.find((c) => c.InferenceComponentName === adapterName);
  const plan = { form: 'inference-components' as const, endpointName, waitFor: { component: adapterName }, artifact, notes: [] as string[] };
  if (!existing) {
    return { ...plan, steps: [{ action: 'CreateInferenceComponent', input: { InferenceComponentName: adapterName, EndpointName: endpointName, Specification } }] };
  }
  if (existing.InferenceComponentName === base) {
    throw new CliError(`${adapterName} is the base model's component on ${endpointName}, not an adapter: pass another --adapter name`);
  }
  if (existing.Specification?.BaseInferenceComponentName !== base) {
    throw new CliError(`${adapterName} on ${endpointName} is an adapter of ${existing.Specification?.BaseInferenceComponentName}, not of the base component ${base}: pass another --adapter name`);
  }
  const status = existing.InferenceComponentStatus;
  if (status === 'Creating' || status === 'Updating') {
    if (existing.Specification?.Container?.ArtifactUrl === artifact) {
      return { ...plan, steps: [], notes: [`adapter ${adapterName} is already ${status} to this model: nothing sent`] };
    }
    throw new CliError(`adapter ${adapterName} on ${endpointName} is ${status} to another model (${existing.Specification?.Container?.ArtifactUrl}): deploy when it is InService`);
  }
  if (status === 'Deleting') throw new CliError(`adapter ${adapterName} on ${endpointName} is being deleted: deploy again when it is gone`);
  return { ...plan, steps: [{ action: 'UpdateInferenceComponent', input: { InferenceComponentName: adapterName, Specification } }] };
}

async function planSingleModel(
  sagemaker: SageMakerClient,
  request: DeployRequest,
  endpoint: DescribeEndpointCommandOutput,
  config: DescribeEndpointConfigCommandOutput,
  currentModelName: string,
): Promise<DeploymentPlan> {
  const { endpointName } = request;
  if (request.adapterName) {
    throw new CliError(
      `endpoint ${endpointName} serves one model (its variant names model ${currentModelName}), not adapters as inference components: drop --adapter to roll it to the merged model`,
    );
  }
  const name = deploymentName(endpointName, request.modelPackageArn);
  const artifact = request.modelData + MODEL_OUTPUT.fullWeights;
  const plan = { form: 'single-model' as const, endpointName, artifact, waitFor: { endpointConfigName: name } };
  if (endpoint.EndpointConfigName === name) {
    return { ...plan, steps: [], notes: [`${endpointName} already runs ${name}: nothing sent`] };
  }
  if (endpoint.PendingDeploymentSummary?.EndpointConfigName === name) {
    return { ...plan, steps: [], notes: [`${endpointName} is already being updated to ${name}: nothing sent`] };
  }
  if (endpoint.EndpointStatus !== 'InService') {
    throw new CliError(`endpoint ${endpointName} is ${endpoint.EndpointStatus}: deploy when it is InService`);
  }

  const steps: DeployStep[] = [];
  const notes: string[] = [];
  if (await exists(() => sagemaker.send(new DescribeModelCommand({ ModelName: name })))) {
    notes.push(`model ${name} exists (an earlier deploy of this package): reused`);
  } else {
    // The new model is the current one with the merged weights: same image, settings, role, network.
    const current: DescribeModelCommandOutput = await sagemaker.send(new DescribeModelCommand({ ModelName: currentModelName }));
    const container = current.PrimaryContainer ?? current.Containers?.[0];
    const input: CreateModelCommandInput = {
      ModelName: name,
      ExecutionRoleArn: current.ExecutionRoleArn,
      PrimaryContainer: withoutUndefined<ContainerDefinition>({
        Image: container?.Image,
        Environment: container?.Environment,
        ModelDataSource: { S3DataSource: { S3Uri: artifact, S3DataType: 'S3Prefix', CompressionType: 'None' } },
      }),
      VpcConfig: current.VpcConfig,
      EnableNetworkIsolation: current.EnableNetworkIsolation,
    };
    steps.push({ action: 'CreateModel', input: withoutUndefined(input) });
  }
  if (await exists(() => sagemaker.send(new DescribeEndpointConfigCommand({ EndpointConfigName: name })))) {
    notes.push(`endpoint config ${name} exists (an earlier deploy of this package): reused`);
  } else {
    // A copy of the current configuration with the new model on its variant.
    const input: CreateEndpointConfigCommandInput = {
      EndpointConfigName: name,
      ProductionVariants: config.ProductionVariants!.map((v) => ({ ...v, ModelName: name })),
      DataCaptureConfig: config.DataCaptureConfig,
      KmsKeyId: config.KmsKeyId,
      AsyncInferenceConfig: config.AsyncInferenceConfig,
      ExplainerConfig: config.ExplainerConfig,
      ShadowProductionVariants: config.ShadowProductionVariants,
      ExecutionRoleArn: config.ExecutionRoleArn,
      VpcConfig: config.VpcConfig,
      EnableNetworkIsolation: config.EnableNetworkIsolation,
      MetricsConfig: config.MetricsConfig,
    };
    steps.push({ action: 'CreateEndpointConfig', input: withoutUndefined(input) });
  }
  const deploymentConfig = endpoint.LastDeploymentConfig;
  if (!deploymentConfig) {
    notes.push(`${endpointName} has no deployment configuration: SageMaker's default applies (blue/green, all at once, no rollback alarms)`);
  }
  steps.push({ action: 'UpdateEndpoint', input: { EndpointName: endpointName, EndpointConfigName: name, ...(deploymentConfig ? { DeploymentConfig: deploymentConfig } : {}) } });
  return { ...plan, steps, notes };
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

async function exists(describe: () => Promise<unknown>): Promise<boolean> {
  try {
    await describe();
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Sends the plan's writes in order. */
export async function applyDeployment(sagemaker: SageMakerClient, plan: DeploymentPlan): Promise<void> {
  for (const step of plan.steps) {
    switch (step.action) {
      case 'CreateModel':
        await sagemaker.send(new CreateModelCommand(step.input));
        break;
      case 'CreateEndpointConfig':
        await sagemaker.send(new CreateEndpointConfigCommand(step.input));
        break;
      case 'UpdateEndpoint':
        await sagemaker.send(new UpdateEndpointCommand(step.input));
        break;
      case 'CreateInferenceComponent':
        await sagemaker.send(new CreateInferenceComponentCommand(step.input));
        break;
      case 'UpdateInferenceComponent':
        await sagemaker.send(new UpdateInferenceComponentCommand(step.input));
        break;
    }
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
 * Polls the adapter component or the endpoint until the deployment ends, like the Deploy stage:
 * InService (on the new config, for endpoints) is deployed; an endpoint back InService on another
 * config was rolled back by SageMaker; Failed, UpdateRollbackFailed and OutOfService failed; after
 * `polls` polls it gives up, and SageMaker finishes or rolls back on its own.
 */
export async function waitForDeployment(sagemaker: SageMakerClient, plan: DeploymentPlan, options: WaitOptions): Promise<DeployOutcome> {
  const polls = options.polls ?? WAIT_POLLS;
  const interval = options.intervalMs ?? WAIT_INTERVAL_MS;
  let last = '';
  for (let poll = 0; poll < polls; poll++) {
    // Right after a write the status may not have left InService yet; with nothing sent it is read at once.
    if (poll > 0 || plan.steps.length > 0) await options.sleep(interval);
    const outcome = await readOutcome(sagemaker, plan);
    if (outcome.status !== last) options.onStatus?.(outcome.status);
    last = outcome.status;
    if (outcome.outcome) return outcome as DeployOutcome;
  }
  const what = 'component' in plan.waitFor ? `adapter ${plan.waitFor.component}` : `endpoint ${plan.endpointName}`;
  return {
    outcome: 'timed-out',
    status: last,
    message: `${what} is still ${last} after ${duration(polls * interval)}: SageMaker finishes or rolls back the deployment on its own; wait again with the same command (it sends nothing twice)`,
  };
}

async function readOutcome(sagemaker: SageMakerClient, plan: DeploymentPlan): Promise<{ outcome?: DeployOutcome['outcome']; status: string; message: string }> {
  if ('component' in plan.waitFor) {
    const name = plan.waitFor.component;
    const c = await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
    const status = c.InferenceComponentStatus ?? 'Unknown';
    if (status === 'InService') return { outcome: 'deployed', status, message: `adapter ${name} is InService on ${plan.endpointName}` };
    if (status === 'Failed') return { outcome: 'failed', status, message: `adapter ${name} on ${plan.endpointName} is Failed: ${c.FailureReason ?? 'no reason given'}` };
    return { status, message: '' };
  }
  const { endpointConfigName } = plan.waitFor;
  const e = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: plan.endpointName }));
  const status = e.EndpointStatus ?? 'Unknown';
  if (status === 'InService' && e.EndpointConfigName === endpointConfigName) {
    return { outcome: 'deployed', status, message: `${plan.endpointName} is InService on ${endpointConfigName}` };
  }
  if (status === 'InService') {
    return {
      outcome: 'rolled-back',
      status,
      message: `${plan.endpointName} rolled back: it is InService on ${e.EndpointConfigName}, not ${endpointConfigName} (an auto-rollback alarm fired or the new fleet failed${e.FailureReason ? `: ${e.FailureReason}` : ''}); the rollback stands`,
    };
  }
  if (status === 'Failed' || status === 'UpdateRollbackFailed' || status === 'OutOfService') {
    return { outcome: 'failed', status, message: `${plan.endpointName} is ${status}: ${e.FailureReason ?? 'no reason given'}` };
  }
  return { status, message: '' };
}
