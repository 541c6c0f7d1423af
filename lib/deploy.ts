import { createHash } from 'node:crypto';
import {
  ContainerDefinition,
  CreateEndpointConfigCommand,
  CreateEndpointConfigCommandInput,
  CreateInferenceComponentCommand,
  CreateInferenceComponentCommandInput,
  CreateModelCommand,
  CreateModelCommandInput,
  DeploymentConfig,
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
import { isNotFound } from './aws-errors';
import { DEPLOY_ERRORS, deploymentNamePrefix } from './deploy-contract';
import { MODEL_OUTPUT } from './layout';

/** The SageMaker client a deployment needs (tests pass a fake). */
export type SageMakerSender = Pick<SageMakerClient, 'send'>;

/**
 * Deploying a registered model to a vLLM endpoint: one definition of the SageMaker calls, made by
 * `tuneyard deploy` (lib/cli/deploy.ts) and by the pipeline's Deploy stage (its Lambda function,
 * constructs/vllm-endpoint/handler/deploy-run.ts). A plan is built with reads only, so every
 * refusal happens before anything is written; applying it again sends nothing twice.
 *
 * New endpoint configurations are copies of the endpoint's current one as SageMaker describes it
 * (API names and all: DataCaptureConfig, KmsKeyId, VolumeSizeInGB, EnableSSMAccess, ...) with the
 * new model on the variant: nothing is renamed or rebuilt from CDK properties.
 */

/** A deployment refused, failed, rolled back or not finished in time; `name` says which ({@link DEPLOY_ERRORS}). */
export class DeployError extends Error {
  constructor(
    readonly kind: keyof typeof DEPLOY_ERRORS,
    message: string,
  ) {
    super(message);
    this.name = DEPLOY_ERRORS[kind];
  }
}

/** How refusals name the caller and its inputs: the CLI's flags or the run request's fields. */
export interface DeployTerms {
  /** Who deploys: `tuneyard deploy`, `the Deploy stage`. */
  readonly deployer: string;
  /** Where the adapter name is given: `--adapter`, `the run request's deploy.adapterName`. */
  readonly adapterOption: string;
  /** What to do when the endpoint does not exist. */
  readonly endpointNotFoundFix: string;
}

const NAME_PATTERN = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/** `<endpoint>-<first 8 hex of sha256(package ARN)>`, at most 63 characters: the model's and endpoint config's name. */
export function deploymentName(endpointName: string, modelPackageArn: string): string {
  return deploymentNamePrefix(endpointName) + createHash('sha256').update(modelPackageArn).digest('hex').slice(0, 8);
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
  /**
   * The endpoint's base inference component, when the caller knows it (the Deploy stage does:
   * it then needs no ListInferenceComponents, which IAM cannot scope).
   *
   * @default - the endpoint's only component without a BaseInferenceComponentName, found by listing them
   */
  readonly baseComponentName?: string;
  /**
   * The DeploymentConfig of UpdateEndpoint (single-model endpoints), when the caller knows the
   * endpoint's own (the Deploy stage: the VllmEndpoint's blue/green or rolling config and rollback alarms).
   *
   * @default - the endpoint's LastDeploymentConfig
   */
  readonly deploymentConfig?: DeploymentConfig;
}

/** What a wait polls: the adapter component, or the endpoint until it runs `endpointConfigName`. */
export interface DeploymentTarget {
  readonly endpointName: string;
  readonly waitFor: { readonly component: string } | { readonly endpointConfigName: string };
}

export interface DeploymentPlan extends DeploymentTarget {
  readonly form: 'single-model' | 'inference-components';
  /** The writes, in order; empty when the endpoint already serves the model or is being updated to it. */
  readonly steps: DeployStep[];
  /** The S3 location the endpoint will load: the adapter tarball or the merged model folder. */
  readonly artifact: string;
  /** Why some steps were left out, and what the endpoint keeps (shown to the user). */
  readonly notes: string[];
}

/** Reads the endpoint and decides the calls that deploy the package to it. Writes nothing. */
export async function planDeployment(sagemaker: SageMakerSender, request: DeployRequest, terms: DeployTerms): Promise<DeploymentPlan> {
  const { endpointName } = request;
  if (!NAME_PATTERN.test(endpointName)) {
    throw new DeployError(
      'targetUnknown',
      `endpoint name "${endpointName}" is invalid: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit`,
    );
  }
  if (!request.modelData.startsWith('s3://') || !request.modelData.endsWith('/')) {
    throw new DeployError(
      'failed',
      `model package ${request.modelPackageArn} has model data ${request.modelData}, not an S3 folder: ${terms.deployer} serves the pipeline's uncompressed model/ folder (${MODEL_OUTPUT.adapterArchive}, ${MODEL_OUTPUT.fullWeights}); deploy other packages yourself`,
    );
  }
  const endpoint = await describeEndpoint(sagemaker, endpointName, terms);
  const config = await sagemaker.send(new DescribeEndpointConfigCommand({ EndpointConfigName: endpoint.EndpointConfigName }));
  const variants = config.ProductionVariants ?? [];
  if (variants.length !== 1) {
    throw new DeployError(
      'failed',
      `endpoint ${endpointName} has ${variants.length} production variants (config ${config.EndpointConfigName}): ${terms.deployer} updates single-variant endpoints, as VllmEndpoint creates them`,
    );
  }
  return variants[0].ModelName
    ? planSingleModel(sagemaker, request, endpoint, config, variants[0].ModelName, terms)
    : planAdapter(sagemaker, request, endpoint, terms);
}

async function describeEndpoint(sagemaker: SageMakerSender, endpointName: string, terms: DeployTerms): Promise<DescribeEndpointCommandOutput> {
  try {
    return await sagemaker.send(new DescribeEndpointCommand({ EndpointName: endpointName }));
  } catch (e) {
    if (isNotFound(e)) throw new DeployError('targetUnknown', `endpoint ${endpointName} not found: ${terms.endpointNotFoundFix}`);
    throw e;
  }
}

async function planAdapter(sagemaker: SageMakerSender, request: DeployRequest, endpoint: DescribeEndpointCommandOutput, terms: DeployTerms): Promise<DeploymentPlan> {
  const { endpointName, adapterName } = request;
  if (!adapterName) {
    throw new DeployError('failed', `endpoint ${endpointName} serves adapters as inference components: name the adapter component with ${terms.adapterOption} (an existing one is updated)`);
  }
  if (!NAME_PATTERN.test(adapterName)) {
    throw new DeployError('failed', `adapter name "${adapterName}" is invalid: use 1-63 letters, digits and hyphens, starting and ending with a letter or digit`);
  }
  if (endpoint.EndpointStatus !== 'InService') {
    throw new DeployError('failed', `endpoint ${endpointName} is ${endpoint.EndpointStatus}: deploy when it is InService`);
  }
  const { base, components } = request.baseComponentName
    ? { base: await knownBase(sagemaker, endpointName, request.baseComponentName), components: [] }
    : await findBase(sagemaker, endpointName);
  const artifact = request.modelData + MODEL_OUTPUT.adapterArchive;
  const Specification = { BaseInferenceComponentName: base, Container: { ArtifactUrl: artifact } };
  const existing = components.find((c) => c.InferenceComponentName === adapterName) ?? (await describeComponent(sagemaker, adapterName));
  const plan = { form: 'inference-components' as const, endpointName, waitFor: { component: adapterName }, artifact, notes: [] as string[] };
  if (!existing) {
    return { ...plan, steps: [{ action: 'CreateInferenceComponent', input: { InferenceComponentName: adapterName, EndpointName: endpointName, Specification } }] };
  }
  if (existing.InferenceComponentName === base) {
    throw new DeployError('failed', `${adapterName} is the base model's component on ${endpointName}, not an adapter: choose another adapter name (${terms.adapterOption})`);
  }
  if (existing.EndpointName !== endpointName) {
    throw new DeployError('failed', `the name ${adapterName} is taken by a component of endpoint ${existing.EndpointName}: choose another adapter name (${terms.adapterOption})`);
  }
  if (existing.Specification?.BaseInferenceComponentName !== base) {
    throw new DeployError(
      'failed',
      `${adapterName} on ${endpointName} is an adapter of ${existing.Specification?.BaseInferenceComponentName}, not of the base component ${base}: choose another adapter name (${terms.adapterOption})`,
    );
  }
  const status = existing.InferenceComponentStatus;
  if (status === 'Creating' || status === 'Updating') {
    if (existing.Specification?.Container?.ArtifactUrl === artifact) {
      return { ...plan, steps: [], notes: [`adapter ${adapterName} is already ${status} to this model: nothing sent`] };
    }
    throw new DeployError('failed', `adapter ${adapterName} on ${endpointName} is ${status} to another model (${existing.Specification?.Container?.ArtifactUrl}): deploy when it is InService`);
  }
  if (status === 'Deleting') throw new DeployError('failed', `adapter ${adapterName} on ${endpointName} is being deleted: deploy again when it is gone`);
  return { ...plan, steps: [{ action: 'UpdateInferenceComponent', input: { InferenceComponentName: adapterName, Specification } }] };
}

/** The named base component, checked: on this endpoint, and no adapter itself. */
async function knownBase(sagemaker: SageMakerSender, endpointName: string, name: string): Promise<string> {
  const base = await describeComponent(sagemaker, name);
  if (!base || base.EndpointName !== endpointName || base.Specification?.BaseInferenceComponentName) {
    throw new DeployError(
      'failed',
      `endpoint ${endpointName} has no base inference component ${name} to load the adapter on (${base ? `it is ${base.Specification?.BaseInferenceComponentName ? 'an adapter' : `on endpoint ${base.EndpointName}`}` : 'not found'}): deploy the plane's serving with \`npx cdk deploy\``,
    );
  }
  return name;
}

/** The endpoint's only component without a BaseInferenceComponentName, and every component read on the way. */
async function findBase(sagemaker: SageMakerSender, endpointName: string): Promise<{ base: string; components: DescribeInferenceComponentCommandOutput[] }> {
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
    throw new DeployError(
      'failed',
      bases.length === 0
        ? `endpoint ${endpointName} has no base inference component (one without BaseInferenceComponentName) to load the adapter on: deploy the plane's serving with \`npx cdk deploy\``
        : `endpoint ${endpointName} has ${bases.length} base inference components (${bases.join(', ')}): an adapter needs exactly one to load on`,
    );
  }
  return { base: bases[0], components };
}

async function describeComponent(sagemaker: SageMakerSender, name: string): Promise<DescribeInferenceComponentCommandOutput | undefined> {
  try {
    return await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

async function planSingleModel(
  sagemaker: SageMakerSender,
  request: DeployRequest,
  endpoint: DescribeEndpointCommandOutput,
  config: DescribeEndpointConfigCommandOutput,
  currentModelName: string,
  terms: DeployTerms,
): Promise<DeploymentPlan> {
  const { endpointName } = request;
  if (request.adapterName) {
    throw new DeployError(
      'failed',
      `endpoint ${endpointName} serves one model (its variant names model ${currentModelName}), not adapters as inference components: drop ${terms.adapterOption} to roll it to the merged model`,
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
    throw new DeployError('failed', `endpoint ${endpointName} is ${endpoint.EndpointStatus}: deploy when it is InService`);
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
    // A copy of the current configuration, as SageMaker describes it, with the new model on its variant.
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
  const deploymentConfig = request.deploymentConfig ?? endpoint.LastDeploymentConfig;
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
export async function applyDeployment(sagemaker: SageMakerSender, plan: DeploymentPlan): Promise<void> {
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

/** Where a deployment stands after one status read. */
export interface DeployStatus {
  /** `in-progress` until the component or endpoint settles. */
  readonly outcome: 'deployed' | 'failed' | 'rolled-back' | 'in-progress';
  /** The status read (InService, Failed, Updating, ...). */
  readonly status: string;
  readonly message: string;
}

/** `adapter NAME` or `endpoint NAME`: what a deployment's wait watches, in words. */
export function deploymentSubject(target: DeploymentTarget): string {
  return 'component' in target.waitFor ? `adapter ${target.waitFor.component}` : `endpoint ${target.endpointName}`;
}

/**
 * Reads the adapter component or the endpoint once: InService (on the new config, for endpoints)
 * is deployed; an endpoint back InService on another config was rolled back by SageMaker; Failed,
 * UpdateRollbackFailed and OutOfService failed; anything else is in progress.
 */
export async function readDeployment(sagemaker: SageMakerSender, target: DeploymentTarget): Promise<DeployStatus> {
  if ('component' in target.waitFor) {
    const name = target.waitFor.component;
    const c = await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
    const status = c.InferenceComponentStatus ?? 'Unknown';
    if (status === 'InService') return { outcome: 'deployed', status, message: `adapter ${name} is InService on ${target.endpointName}` };
    if (status === 'Failed') return { outcome: 'failed', status, message: `adapter ${name} on ${target.endpointName} is Failed: ${c.FailureReason ?? 'no reason given'}` };
    return { outcome: 'in-progress', status, message: `adapter ${name} is ${status}` };
  }
  const { endpointConfigName } = target.waitFor;
  const e = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: target.endpointName }));
  const status = e.EndpointStatus ?? 'Unknown';
  if (status === 'InService' && e.EndpointConfigName === endpointConfigName) {
    return { outcome: 'deployed', status, message: `${target.endpointName} is InService on ${endpointConfigName}` };
  }
  if (status === 'InService') {
    return {
      outcome: 'rolled-back',
      status,
      message: `${target.endpointName} rolled back: it is InService on ${e.EndpointConfigName}, not ${endpointConfigName} (an auto-rollback alarm fired or the new fleet failed${e.FailureReason ? `: ${e.FailureReason}` : ''}); the rollback stands`,
    };
  }
  if (status === 'Failed' || status === 'UpdateRollbackFailed' || status === 'OutOfService') {
    return { outcome: 'failed', status, message: `${target.endpointName} is ${status}: ${e.FailureReason ?? 'no reason given'}` };
  }
  return { outcome: 'in-progress', status, message: `endpoint ${target.endpointName} is ${status}` };
}

export interface WaitOptions {
  readonly sleep: (ms: number) => Promise<void>;
  /** Status reads at most. */
  readonly polls: number;
  /** The wait before each read (the first too, when `sleepFirst`). */
  readonly intervalMs: number;
  /** Wait before the first read: right after a write the status may not have left InService yet. */
  readonly sleepFirst: boolean;
  /** Called with each status read that differs from the previous one. */
  readonly onStatus?: (status: string) => void;
}

/**
 * Reads the deployment every `intervalMs` until it is deployed, failed or rolled back, or `polls`
 * reads were made (then `in-progress`: SageMaker finishes or rolls back on its own).
 */
export async function waitForDeployment(sagemaker: SageMakerSender, target: DeploymentTarget, options: WaitOptions): Promise<DeployStatus> {
  let last: DeployStatus | undefined;
  for (let poll = 0; poll < options.polls; poll++) {
    if (poll > 0 || options.sleepFirst) await options.sleep(options.intervalMs);
    const read = await readDeployment(sagemaker, target);
    if (read.status !== last?.status) options.onStatus?.(read.status);
    last = read;
    if (read.outcome !== 'in-progress') return read;
  }
  return last ?? readDeployment(sagemaker, target);
}
