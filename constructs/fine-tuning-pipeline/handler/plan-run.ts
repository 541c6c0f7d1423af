import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeModelPackageCommand, type DescribeModelPackageCommandOutput, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { isOnlineRl } from '../../../lib/methods';
import { resolveRecipe } from '../../../lib/recipe';
import { echoValue, gradersFileBody, MODEL_PACKAGE_ARN, parseRunRequest, PlanLookups, planRun, PlanSettings, registeredRewardModel, RunPlan, RunRequest } from '../../../lib/run-request';
import { chatTemplateProblem, ModelFileReader, rewardVocabularyProblem } from '../../../lib/reward-vocabulary';

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
  /**
   * The judge's result (`$.judge`): null here, so that the path always exists (a JSONPath to a missing field is an
   * uncatchable States.Runtime error); the JudgeAnswers states replace it for a run with a judge.
   */
  readonly judge: null;
}

/** What a Deploy stage takes from a run's output: the LoRA adapter, or the full (merged) weights. */
export type DeployArtifact = 'adapter' | 'full-weights';

/** What the plane tells PlanRun besides the request. */
export interface PlanRunEnvironment extends PlanSettings {
  /** Whether the pipeline has a Deploy stage (a request that asks for a deployment is refused without one). */
  readonly deployStage: boolean;
  /** What the Deploy stage deploys, when it says (a run that would not write it is refused). */
  readonly deploys?: DeployArtifact;
  /** What the Deploy stage's adapter names start with, when it says (its IAM allows no other inference component). */
  readonly adapterNamePrefix?: string;
  /** The state machine's timeout: a run whose jobs could outlast it is refused. */
  readonly runTimeoutSeconds?: number;
}

/**
 * The longest RunRequestInvalid message. The messages clip the request values they repeat; this
 * bounds the rest, since the message becomes the execution's error Cause (at most 32,768 characters)
 * and the notification.
 */
export const MESSAGE_MAX_LENGTH = 8192;

/** The request cannot run; the message names each field and the fix. Never retried. */
export class RunRequestInvalid extends Error {
  constructor(message: string) {
    super(message.length <= MESSAGE_MAX_LENGTH ? message : `${message.slice(0, MESSAGE_MAX_LENGTH)}... (${message.length} characters)`);
    this.name = 'RunRequestInvalid';
  }
}

/**
 * Re-validates the RunRequest (the CLI validated it before starting the execution, but anyone
 * with StartExecution can start one) and plans the run.
 */
export function planRunStep(event: PlanRunEvent, env: PlanRunEnvironment, lookups: PlanLookups = {}): PlanRunResult {
  let request: RunRequest;
  let plan: RunPlan;
  try {
    request = parseRunRequest(event?.request);
    plan = planRun(request, env, lookups);
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
  const adapterName = request.deploy?.adapterName;
  if (adapterName && env.adapterNamePrefix && !adapterName.startsWith(env.adapterNamePrefix)) {
    const named = `${env.adapterNamePrefix}${adapterName}`;
    throw new RunRequestInvalid(
      `deploy.adapterName: this pipeline's Deploy stage deploys adapters named ${env.adapterNamePrefix}* only (it may create and update no other inference component); got "${adapterName}". ` +
        (named.length <= 63 ? `Name the adapter ${named} (tuneyard train --adapter ${named}).` : `Name the adapter with that prefix, in at most 63 characters.`),
    );
  }
  const recipe = resolveRecipe(request.recipe);
  if (request.deploy && env.deploys) {
    const writesAdapter = recipe.method === 'lora' || recipe.method === 'qlora' || isOnlineRl(recipe.method) || (recipe.method === 'dpo' && recipe.useLora);
    const writesFullWeights = !writesAdapter || recipe.merge;
    if (env.deploys === 'adapter' && !request.deploy.adapterName) {
      throw new RunRequestInvalid(
        `deploy.adapterName: endpoint "${request.deploy.endpointName}" serves LoRA adapters as inference components; name the run's adapter (tuneyard train --adapter NAME).`,
      );
    }
    if (env.deploys === 'adapter' && !writesAdapter) {
      throw new RunRequestInvalid(
        `deploy: endpoint "${request.deploy.endpointName}" serves LoRA adapters, but method ${recipe.method}${recipe.method === 'dpo' ? ' with useLora false' : ''} trains all weights and writes no adapter. ` +
          'Use method lora or qlora (or dpo with useLora true), or deploy the model to a single-model endpoint.',
      );
    }
    if (env.deploys === 'full-weights' && !writesFullWeights) {
      throw new RunRequestInvalid(
        `deploy: endpoint "${request.deploy.endpointName}" serves full models, but this ${recipe.method} run writes only a LoRA adapter. ` +
          (isOnlineRl(recipe.method)
            ? `${recipe.method === 'rloo' ? 'An' : 'A'} ${recipe.method} run does not merge (recipe.merge does not apply): deploy its adapter to an endpoint that serves adapters, or merge it yourself.`
            : 'Set recipe.merge to true so the run also writes the merged model.'),
      );
    }
  }
  if (env.runTimeoutSeconds !== undefined) {
    // Worst case: the training job waits for spot capacity up to MaxWait, then the evaluation job runs to its limit.
    const training = plan.stoppingCondition.MaxWaitTimeInSeconds ?? plan.stoppingCondition.MaxRuntimeInSeconds;
    const evaluation = plan.evaluationStoppingCondition.MaxRuntimeInSeconds;
    if (training + evaluation > env.runTimeoutSeconds) {
      const hours = (seconds: number) => `${Math.round((seconds / 3600) * 10) / 10} h`;
      throw new RunRequestInvalid(
        `maxRuntimeHours: training (up to ${hours(training)}${plan.stoppingCondition.MaxWaitTimeInSeconds ? ' with spot waits' : ''}) and evaluation (up to ${hours(evaluation)}) ` +
          `could outlast the pipeline's timeout of ${hours(env.runTimeoutSeconds)}. Lower maxRuntimeHours, or raise the pipeline's timeout (config pipeline.timeoutDays).`,
      );
    }
  }
  return {
    request,
    plan,
    datasetCheck: {
      datasetName: request.dataset.name,
      datasetSha256: request.dataset.sha256,
      method: recipe.method,
      maxLength: recipe.maxLength,
    },
    judge: null,
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
    // Required, never defaulted: the pipeline grants its state machine the job prefix's jobs only (AccessDenied on any other).
    jobNamePrefix: required('TUNEYARD_JOB_NAME_PREFIX'),
    minComputeCapability: env.TUNEYARD_MIN_COMPUTE_CAPABILITY ? Number(env.TUNEYARD_MIN_COMPUTE_CAPABILITY) : undefined,
    deployStage: env.TUNEYARD_DEPLOY_STAGE === 'enabled',
    deploys: env.TUNEYARD_DEPLOYS === 'adapter' || env.TUNEYARD_DEPLOYS === 'full-weights' ? env.TUNEYARD_DEPLOYS : undefined,
    adapterNamePrefix: env.TUNEYARD_ADAPTER_NAME_PREFIX || undefined,
    runTimeoutSeconds: env.TUNEYARD_RUN_TIMEOUT_SECONDS ? Number(env.TUNEYARD_RUN_TIMEOUT_SECONDS) : undefined,
    judgeModelIds: (env.TUNEYARD_JUDGE_MODEL_IDS ?? '').split(',').filter(Boolean),
  };
}

/** What PlanRun writes with: an S3 client. */
export type S3Writer = { send(command: PutObjectCommand): Promise<unknown> };

/**
 * Plans the run and writes its graders, when it has any, to `plan.gradersFile` (`eval-reports/<run>/graders.json`):
 * the evaluation job's `graders` channel. A hyperparameter value holds at most 2,500 characters, less than one long
 * python grader or judge prompt; the file holds up to GRADERS_FILE_MAX_BYTES (lib/run-request.ts).
 *
 * The write is idempotent: the run id is a hash of the whole request, graders included, so a run's graders.json always
 * has the same bytes, and a retried PlanRun (or a restarted execution of the same request) writes them again unchanged.
 * It is written before the run starts any job, and nothing else writes that key.
 *
 * With `modelFiles`, a run with a rewardModel is refused when the reward model's vocabulary is not its base model's
 * (reward-vocabulary.ts reads both tokenizer.json files), and a grpo or rloo run without recipe.chatTemplate when its
 * staged base model's tokenizer has no chat template (tokenizer_config.json, chat_template.jinja).
 */
export async function planRunAndWriteGraders(
  event: PlanRunEvent,
  env: PlanRunEnvironment,
  s3: S3Writer,
  registry?: RegistryReader,
  modelFiles?: ModelFileReader,
): Promise<PlanRunResult> {
  const lookups = registry ? await registryLookups(event, registry) : {};
  const result = planRunStep(event, env, lookups);
  // a reward model of another tokenizer family: refused before any job starts (the job would refuse it before weights load)
  const vocabulary = modelFiles && (await rewardVocabularyProblem(result, lookups, modelFiles));
  if (vocabulary) throw new RunRequestInvalid(vocabulary);
  // a grpo/rloo policy without a chat template: refused before any job starts (the job would refuse it before weights load)
  const chatTemplate = modelFiles && (await chatTemplateProblem(result, modelFiles));
  if (chatTemplate) throw new RunRequestInvalid(chatTemplate);
  const file = result.plan.gradersFile;
  if (file) {
    await s3.send(new PutObjectCommand({ Bucket: file.bucket, Key: file.key, Body: gradersFileBody(result.request)!, ContentType: 'application/json' }));
  }
  return result;
}

/** What PlanRun reads the registry with: a SageMaker client (DescribeModelPackage). */
export type RegistryReader = { send(command: DescribeModelPackageCommand): Promise<DescribeModelPackageCommandOutput> };

/**
 * What the registry says about the model package a grpo or rloo request names as its rewardModel: its model data and its
 * lineage kind and base model, which planRun checks (a reward model, kind=reward) and plans (the reward_model channel).
 * A package that does not exist, or that PlanRun may not read (another group), is refused with the fix.
 */
export async function registryLookups(event: PlanRunEvent, registry: RegistryReader): Promise<PlanLookups> {
  const named = (event?.request as { rewardModel?: unknown } | undefined)?.rewardModel;
  if (typeof named !== 'string' || !MODEL_PACKAGE_ARN.test(named)) return {};
  let described: DescribeModelPackageCommandOutput;
  try {
    described = await registry.send(new DescribeModelPackageCommand({ ModelPackageName: named }));
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'ValidationException' || name === 'ResourceNotFound' || name === 'AccessDeniedException') {
      throw new RunRequestInvalid(
        `rewardModel: ${echoValue(named)} cannot be read from this plane's model registry (${name}: ${(e as Error).message}); ` +
          'name a reward model version of its model package group (`tuneyard models`), or pass the reward run\'s s3:// model data folder.',
      );
    }
    throw e;
  }
  const rewardModel = registeredRewardModel(described);
  if (!rewardModel) throw new RunRequestInvalid(`rewardModel: ${echoValue(named)} has no model data in the registry (InferenceSpecification); name a version that a Tuneyard reward run registered.`);
  return { rewardModel };
}

let s3: S3Client | undefined;
let sagemaker: SageMakerClient | undefined;

/** The Lambda entry point. */
export async function handler(event: PlanRunEvent): Promise<PlanRunResult> {
  s3 ??= new S3Client({});
  sagemaker ??= new SageMakerClient({});
  return planRunAndWriteGraders(event, environmentSettings(process.env), s3, sagemaker, s3);
}
