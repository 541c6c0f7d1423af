import * as path from 'node:path';
import { Duration, Names, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { createLogKey, createPlaneFunction } from '../../lib/plane-function';
import { TuneyardValidationError } from '../../lib/errors';
import { DATA_PREFIXES } from '../../lib/layout';
import { GATE_REJECTED_ERROR, isJobNamePrefix, MAX_JOB_NAME_PREFIX_LENGTH } from '../../lib/run-request';
import { inferenceProfileGeography, JUDGE_MODEL_ID } from '../../lib/judge';

export { GATE_REJECTED_ERROR };
import type { DeployArtifact } from './handler/plan-run';

export type { DeployArtifact };
import { DatasetStore } from '../dataset-store';
import { DatasetValidationFunction } from '../dataset-validator';
import { FineTuningJob } from '../fine-tuning-job';
import { ModelRegistry } from '../model-registry';
import { NotificationTopic } from '../notification-topic';
import { acknowledge, acknowledgeOnGrantee, inControlPacks, nagResource } from '../../lib/nag';

/**
 * A Task-like state that the pipeline wires: it adds retries, a catch and the next state.
 * (A union of the state classes with public `addRetry`/`addCatch`: jsii has no intersection types.)
 */
export type PipelineTaskState = sfn.TaskStateBase | sfn.CustomState;

/**
 * What the pipeline needs from the training-job construct (`FineTuningJob` implements it).
 * The states read the run plan at `$.plan.*` and must set their own `TimeoutSeconds`.
 * PlanRun plans each run with the job's settings (prefix, key, Hub models), so the jobs it names
 * are the jobs `grantStart` allows.
 */
export interface IPipelineTrainingJob {
  /** The data store the jobs read from and write to: it must be the pipeline's. */
  readonly store: DatasetStore;
  /** The prefix of every job name (PlanRun names the run's jobs `<prefix><run id>-train` and `-eval`). */
  readonly jobNamePrefix: string;
  /** The key for the training volume (where the instance allows one) and the job outputs. */
  readonly encryptionKey: kms.IKey;
  /** Whether a Hub id may be the base model (such jobs run without network isolation). */
  readonly allowHubModels: boolean;
  /**
   * The lowest GPU compute capability the jobs' image runs on: PlanRun refuses runs on older GPUs.
   * Undefined: not checked.
   */
  readonly minComputeCapability?: number;
  /** The CreateTrainingJob `.sync` state that trains the model. */
  trainState(id: string): PipelineTaskState;
  /** The CreateTrainingJob `.sync` state that evaluates base and tuned model (writes eval.json). */
  evaluateState(id: string): PipelineTaskState;
  /** Lets the state machine start, describe and stop the jobs and pass their role. */
  grantStart(grantee: iam.IGrantable): unknown;
}

/** What the pipeline needs from the model registry (`ModelRegistry` implements it). */
export interface IPipelineModelRegistry {
  /** The model package group the tuned models are registered in. */
  readonly modelPackageGroupName: string;
  /** The state that registers the tuned model with its lineage (reads `$.plan`, `$.training`, `$.report`). */
  registerState(id: string): PipelineTaskState;
  /** Lets the state machine register model packages. */
  grantRegister(grantee: iam.IGrantable): unknown;
}

/**
 * What the pipeline needs from the dataset validator (`DatasetValidationFunction` implements it):
 * a function with input `{datasetName, datasetSha256, method, maxLength?}` that throws an error
 * named `DatasetInvalid` for a bad dataset.
 */
export interface IPipelineDatasetValidator {
  /** The function the ValidateDataset state invokes. */
  readonly function: lambda.IFunction;
  /** The data store whose dataset versions it reads: it must be the pipeline's. */
  readonly store: DatasetStore;
}

/** What a stage added to the pipeline (such as Deploy) gets to build its states. */
export interface IPipelineStageContext {
  /** The state machine's role: grant the stage's permissions to it. */
  readonly role: iam.IRole;
  /** The notification topic. */
  readonly topic: sns.ITopic;
  /**
   * The plane's data store: the run's model (`$.plan.modelArtifactS3Uri`) is under its
   * `artifacts/` prefix, which whatever loads the model (an endpoint's role) must be able to read.
   */
  readonly store: DatasetStore;
  /**
   * A chain that notifies the failure of `stage` and ends in a Fail state named `failStateName`;
   * catch the stage's errors into it with `resultPath: '$.error'`.
   */
  failure(failStateName: string, stage: string): sfn.IChainable;
  /** Adds the pipeline's standard retries (throttling and transient errors, full jitter) to a state. */
  addTransientRetries(state: PipelineTaskState, kind: 'lambda' | 'sagemaker' | 'sns'): void;
  /**
   * A Lambda function made the pipeline's way (bundled, its log key, retention, removal policy,
   * VPC and concurrency setting), in the pipeline's scope with construct id `id`.
   */
  createFunction(id: string, options: PipelineFunctionOptions): lambda.IFunction;
}

/** A stage's Lambda function (see {@link IPipelineStageContext.createFunction}). */
export interface PipelineFunctionOptions {
  /** The handler's path without extension; it exports `handler`. */
  readonly entry: string;
  readonly description: string;
  readonly memorySize: number;
  readonly timeout: Duration;
  /** Reserved (and capped) concurrency, unless the pipeline reserves none (`reserveConcurrency: false`). */
  readonly reservedConcurrentExecutions: number;
  readonly environment?: Record<string, string>;
  /** Why the function may run outside a VPC, when the pipeline has none. */
  readonly outsideVpcReason: string;
  /** What the role's own statements are scoped to, for the inline-policy acknowledgement. */
  readonly policyScope: string;
}

/** A stage that the pipeline runs after Register when the run asks for it (`$.plan.deploy` set). */
export interface IPipelineStage {
  /**
   * What the stage deploys from a run's output: its LoRA adapter, or its full (merged) weights.
   * PlanRun refuses a run that asks for a deployment but will not write it.
   */
  readonly deploys?: DeployArtifact;
  /**
   * What every adapter name a run deploys must start with (the stage may create and update only
   * those inference components). PlanRun refuses a run whose `deploy.adapterName` does not.
   *
   * @default - no prefix: PlanRun checks no adapter name
   */
  readonly adapterNamePrefix?: string;
  /** Creates the stage's states in `scope`; the chain's end states are followed by NotifySucceeded. */
  bind(scope: Construct, context: IPipelineStageContext): sfn.IChainable;
}

/** Properties of a {@link FineTuningPipeline}. */
export interface FineTuningPipelineProps {
  /**
   * The plane's data: PlanRun plans runs in its bucket, the ReadEvalReport step reads eval reports
   * from it, and the training job and the dataset validator must work on it too.
   */
  readonly store: DatasetStore;
  /**
   * The training and evaluation jobs. Runs are planned with its settings: job name prefix,
   * encryption key, Hub models.
   *
   * @default - a new `FineTuningJob` on `store` running the bundled trainer image, with the
   * job name prefix 'tuneyard-' and the store's key; in `vpc` when one is given, else with network
   * isolation and no VPC
   */
  readonly trainingJob?: IPipelineTrainingJob;
  /**
   * The model registry whose Register state records every model that passes the gate.
   *
   * @default - a new `ModelRegistry` (its group named after this construct's path; packages name
   * the vLLM DLC as their serving image)
   */
  readonly registry?: IPipelineModelRegistry;
  /**
   * The dataset validator that the ValidateDataset state invokes.
   *
   * @default - a new `DatasetValidationFunction` on `store`, with this pipeline's log key,
   * retention, concurrency setting and `vpc`
   */
  readonly datasetValidator?: IPipelineDatasetValidator;
  /**
   * The topic that receives run outcomes (succeeded, rejected, failed with stage and cause, stopped).
   * The state machine's role is granted publish (and the topic's key).
   *
   * @default - the topic of a new `NotificationTopic` (KMS-encrypted, TLS only)
   */
  readonly topic?: sns.ITopic;
  /**
   * The Deploy stage, run after Register when the run asks for a deployment.
   *
   * @default - no Deploy stage: PlanRun refuses a run whose request asks for a deployment
   * (`RunRequestInvalid`), before any GPU time is spent
   */
  readonly deployStage?: IPipelineStage;
  /**
   * How long the state machine's logs (and the Lambdas' logs) are kept.
   *
   * @default logs.RetentionDays.ONE_YEAR
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * The longest a run may take, end to end (queueing for spot capacity included).
   * At most 24 days (Step Functions allows a year; SageMaker training at most 28 days).
   *
   * @default Duration.days(7)
   */
  readonly timeout?: Duration;
  /**
   * Whether the pipeline's Lambda functions reserve concurrency (and are capped at it): PlanRun,
   * ReadEvalReport, InspectJob and JudgeAnswers 5 each, the default dataset validator 5, a Deploy stage's function 2.
   * Lambda keeps 100 units of an account's limit unreserved, so an account whose limit is 10 (new
   * accounts) cannot reserve any and the deployment fails: set this to false there, or ask for a limit
   * increase.
   *
   * @default true
   */
  readonly reserveConcurrency?: boolean;
  /**
   * The key that encrypts the state machine's and the Lambdas' log groups.
   *
   * @default - a new key with rotation that CloudWatch Logs of this account and region may use
   */
  readonly logEncryptionKey?: kms.IKey;
  /**
   * The VPC that the pipeline's Lambda functions run in (they call S3: give the VPC an S3 gateway
   * endpoint; with `judgeModelIds` the judge's function also calls Bedrock Runtime: an interface
   * endpoint or a NAT route), and the default training job and dataset validator too.
   *
   * @default - the functions run outside a VPC
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Where in `vpc` the functions run.
   *
   * @default - the VPC's private subnets with egress, else its isolated subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * What happens to a key this construct creates, the log groups, and the collaborators it
   * creates (registry, topic key, validator), when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * The Amazon Bedrock models a run's LLM judge may name (RunRequest `judge.modelId`): foundation model ids
   * (`amazon.nova-pro-v1:0`) or cross-region inference profile ids (`us.anthropic.claude-3-5-haiku-20241022-v1:0`).
   * With any, the pipeline gets a JudgeAnswers state after Evaluate whose function may invoke these models only
   * (`bedrock:InvokeModel`); the models must be enabled in the account (Bedrock model access).
   *
   * @default - none: no judge; PlanRun refuses a request that asks for one
   */
  readonly judgeModelIds?: string[];
}

/** The pipeline's state names that other code (CLI, dashboards, tests) relies on. */
export const PIPELINE_STATES = {
  planRun: 'PlanRun',
  validateDataset: 'ValidateDataset',
  train: 'Train',
  inspectTraining: 'InspectTraining',
  evaluate: 'Evaluate',
  inspectEvaluation: 'InspectEvaluation',
  judgeRequested: 'JudgeRequested',
  judgeAnswers: 'JudgeAnswers',
  judgeDone: 'JudgeDone',
  readEvalReport: 'ReadEvalReport',
  gate: 'Gate',
  register: 'Register',
  deployRequested: 'DeployRequested',
  notifySucceeded: 'NotifySucceeded',
  succeeded: 'Succeeded',
  notifyRejected: 'NotifyRejected',
  rejected: 'Rejected',
} as const;

/** The Fail states of the pipeline, one per cause. */
export const PIPELINE_FAILURES = {
  runRequestInvalid: 'RunRequestInvalid',
  planRunFailed: 'PlanRunFailed',
  datasetInvalid: 'DatasetInvalid',
  datasetValidationFailed: 'DatasetValidationFailed',
  trainingFailed: 'TrainingFailed',
  evaluationFailed: 'EvaluationFailed',
  evalReportInvalid: 'EvalReportInvalid',
  judgeFailed: 'JudgeFailed',
  registrationFailed: 'RegistrationFailed',
  rejected: 'Rejected',
} as const;


/** How long one JudgeAnswers invocation may run (a run with more items loops, from its cursor). */
const JUDGE_FUNCTION_TIMEOUT = Duration.minutes(10);

/** The CloudWatch namespace of the pipeline's own metrics. */
export const PIPELINE_METRICS_NAMESPACE = 'Tuneyard/Pipeline';

const LAMBDA_TRANSIENT_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
];
// The optimized SageMaker integration (CreateTrainingJob .sync) folds throttling, ValidationException and
// ResourceInUse alike into SageMaker.AmazonSageMakerException: a Retry cannot tell them apart, and a blind
// retry of a create whose answer was lost meets ResourceInUse while the job runs on unwatched. So the Train
// and Evaluate states retry nothing; their failures go to InspectTraining/InspectEvaluation, which look at the
// job (adopt a running one, go on with a completed one) and retry only a create refused for throttling.
// The aws-sdk:sagemaker integration reports throttling and ValidationException alike as SageMaker.SageMakerException:
// no Retry names it (a ValidationException is never retried); Register catches it and tries again only when the
// cause says throttling (RegisterThrottled).
const SAGEMAKER_SDK_TRANSIENT_ERRORS = ['SageMaker.InternalFailureException', 'SageMaker.ServiceUnavailableException', 'ThrottlingException'];
/** The SDK integration's name for SageMaker's unmodelled errors: throttling and ValidationException alike. */
const SAGEMAKER_SDK_UNMODELLED_ERROR = 'SageMaker.SageMakerException';
/** How many times Register is tried again after throttling (never after a ValidationException). */
export const REGISTER_THROTTLE_RETRIES = 4;
const SNS_TRANSIENT_ERRORS = ['SNS.ThrottledException', 'SNS.InternalErrorException', 'SNS.KMSThrottlingException', 'ThrottlingException'];

/**
 * The fine-tuning run as a Step Functions state machine (JSONPath, Standard workflow):
 *
 * PlanRun → ValidateDataset → Train → Evaluate → [JudgeRequested → JudgeAnswers (looped by cursor), with
 * `judgeModelIds`] → ReadEvalReport → Gate → Register
 * → [DeployRequested → Deploy] → NotifySucceeded → Succeeded.
 *
 * A run the gate rejects goes NotifyRejected → Rejected (error `Tuneyard.GateRejected`, the
 * report's summary as cause) and registers nothing. Every Task retries throttling and transient
 * errors with exponential backoff and full jitter, never a deterministic failure, and catches
 * everything else into a Notify…Failed step (run id, stage, error, cause) and a Fail state that
 * names the stage and carries the original error and cause.
 *
 * The execution input is a RunRequest; the CLI names the execution `runIdFor(request)`. Starting
 * a Standard workflow again with the same name and the same input is idempotent (StartExecution
 * returns the running execution); the same name with a different input fails with
 * `ExecutionAlreadyExists`, so a retried `tuneyard train` never launches a second run.
 *
 * Logs: ALL events with execution data to a KMS-encrypted log group; X-Ray tracing on.
 */
export class FineTuningPipeline extends Construct {
  /** The state machine. */
  public readonly stateMachine: sfn.StateMachine;
  /** The state machine's role. */
  public readonly role: iam.IRole;
  /** The state machine's log group (execution history with data). */
  public readonly logGroup: logs.ILogGroup;
  /** The key that encrypts the log groups. */
  public readonly logEncryptionKey: kms.IKey;
  /** The PlanRun Lambda function. */
  public readonly planRunFunction: lambda.IFunction;
  /** The ReadEvalReport Lambda function. */
  public readonly readEvalReportFunction: lambda.IFunction;
  /** The function that looks at a training or evaluation job after its state failed (InspectTraining, InspectEvaluation). */
  public readonly inspectJobFunction: lambda.IFunction;
  /** The JudgeAnswers function (the LLM judge on Bedrock); undefined when `judgeModelIds` allows none. */
  public readonly judgeFunction?: lambda.IFunction;
  /** The plane's data store. */
  public readonly store: DatasetStore;
  /** The training and evaluation jobs (given, or created). */
  public readonly trainingJob: IPipelineTrainingJob;
  /** The model registry (given, or created). */
  public readonly registry: IPipelineModelRegistry;
  /** The dataset validator (given, or created). */
  public readonly datasetValidator: IPipelineDatasetValidator;
  /** The topic that receives run outcomes (given, or created). */
  public readonly topic: sns.ITopic;

  private readonly logRetention: logs.RetentionDays;
  private readonly removalPolicy: RemovalPolicy;
  private readonly props: FineTuningPipelineProps;

  constructor(scope: Construct, id: string, props: FineTuningPipelineProps) {
    super(scope, id);
    const timeout = props.timeout ?? Duration.days(7);
    const seconds = timeout.toSeconds({ integral: false });
    if (!Token.isUnresolved(seconds) && (seconds < 60 || seconds > 24 * 24 * 3600)) {
      throw new TuneyardValidationError(
        `timeout must be between 1 minute and 24 days; got ${timeout.toHumanString()}. Use e.g. Duration.days(7).`,
        this,
      );
    }
    this.props = props;
    this.store = props.store;
    this.logRetention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    this.removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const stack = Stack.of(this);
    this.validateCollaborators(props);

    this.logEncryptionKey =
      props.logEncryptionKey ?? createLogKey(this, 'LogsKey', 'Tuneyard pipeline logs (state machine and Lambda log groups)', this.removalPolicy);
    this.trainingJob = props.trainingJob ?? new FineTuningJob(this, 'TrainingJob', { store: props.store, vpc: props.vpc, vpcSubnets: props.vpcSubnets });
    this.registry = props.registry ?? new ModelRegistry(this, 'Registry', { removalPolicy: this.removalPolicy });
    this.datasetValidator =
      props.datasetValidator ??
      new DatasetValidationFunction(this, 'DatasetValidator', {
        store: props.store,
        reserveConcurrency: props.reserveConcurrency,
        logEncryptionKey: this.logEncryptionKey,
        logRetention: this.logRetention,
        removalPolicy: this.removalPolicy,
        vpc: props.vpc,
        vpcSubnets: props.vpcSubnets,
      });
    this.topic = props.topic ?? new NotificationTopic(this, 'Notifications', { removalPolicy: this.removalPolicy }).topic;
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
      description: 'Tuneyard fine-tuning pipeline (Step Functions)',
    });

    this.planRunFunction = this.createFunction('PlanRunFunction', 'plan-run', 'Tuneyard: validates a RunRequest and plans the run', {
      // The plan settings, from the job and the store: PlanRun names the jobs that grantStart allows.
      TUNEYARD_BUCKET_NAME: props.store.bucket.bucketName,
      TUNEYARD_VOLUME_KMS_KEY_ARN: this.trainingJob.encryptionKey.keyArn,
      TUNEYARD_OUTPUT_KMS_KEY_ARN: this.trainingJob.encryptionKey.keyArn,
      TUNEYARD_ALLOW_HUB_MODELS: this.trainingJob.allowHubModels ? 'true' : 'false',
      TUNEYARD_JOB_NAME_PREFIX: this.trainingJob.jobNamePrefix,
      TUNEYARD_MIN_COMPUTE_CAPABILITY: this.trainingJob.minComputeCapability === undefined ? '' : String(this.trainingJob.minComputeCapability),
      TUNEYARD_DEPLOY_STAGE: props.deployStage ? 'enabled' : 'disabled',
      TUNEYARD_DEPLOYS: props.deployStage?.deploys ?? '',
      TUNEYARD_ADAPTER_NAME_PREFIX: props.deployStage?.adapterNamePrefix ?? '',
      TUNEYARD_RUN_TIMEOUT_SECONDS: String(timeout.toSeconds()),
      TUNEYARD_JUDGE_MODEL_IDS: (props.judgeModelIds ?? []).join(','),
    }, 1024); // 1,024 MB: it may parse a reward model's and a base model's tokenizer.json (two of 30 MB: ~400 MB at peak)
    this.grantGradersFile(props.store);
    this.grantModelTokenizers(props.store);
    // a grpo or rloo run's rewardModel may name a model package version of the registry: PlanRun reads its model data and lineage kind
    const rewardModels = stack.formatArn({ service: 'sagemaker', resource: 'model-package', resourceName: `${this.registry.modelPackageGroupName}/*` });
    this.planRunFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sagemaker:DescribeModelPackage'], resources: [rewardModels] }));
    acknowledgeOnGrantee(this.planRunFunction, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, rewardModels)}]`]: "Reads the registry's model package versions (a grpo or rloo run's reward model, named per request); read-only, this group only.",
    });
    this.readEvalReportFunction = this.createFunction('ReadEvalReportFunction', 'read-eval-report', 'Tuneyard: reads eval.json of an evaluation job');
    props.store.grantReadEvalReports(this.readEvalReportFunction);
    this.inspectJobFunction = this.createFunction('InspectJobFunction', 'inspect-job', 'Tuneyard: looks at a training or evaluation job whose pipeline state failed');
    const jobs = stack.formatArn({ service: 'sagemaker', resource: 'training-job', resourceName: `${this.trainingJob.jobNamePrefix}*` });
    this.inspectJobFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sagemaker:DescribeTrainingJob'], resources: [jobs] }));
    acknowledgeOnGrantee(this.inspectJobFunction, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, jobs)}]`]: "Describes the run's own training and evaluation jobs, named at run time with the plane's job name prefix; read-only.",
    });
    acknowledgeOnGrantee(this.readEvalReportFunction, {
      [`AwsSolutions-IAM5[Resource::${nagResource(Stack.of(this), props.store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*`))}]`]:
        'Reads the eval report of any run under eval-reports/: the run is chosen per execution (the plan names the object).',
    });

    this.judgeFunction = this.createJudgeFunction(props.judgeModelIds ?? []);

    const definition = this.buildDefinition();

    const logGroup = new logs.LogGroup(this, 'Logs', {
      // The /aws/vendedlogs/ prefix keeps CloudWatch Logs' resource policy small (one entry for all).
      logGroupName: `/aws/vendedlogs/states/${Names.uniqueResourceName(this, { maxLength: 200, separator: '-' })}`,
      encryptionKey: this.logEncryptionKey,
      retention: this.logRetention,
      removalPolicy: this.removalPolicy,
    });
    this.logGroup = logGroup;

    this.stateMachine = new sfn.StateMachine(this, 'Resource', {
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      stateMachineType: sfn.StateMachineType.STANDARD,
      role: this.role,
      timeout,
      tracingEnabled: true,
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
      comment: 'Tuneyard fine-tuning run: plan, validate, train, evaluate, gate, register, deploy, notify',
    });

    this.trainingJob.grantStart(this.role);
    this.registry.grantRegister(this.role);
    this.topic.grantPublish(this.role);
    if (this.topic.masterKey) this.topic.masterKey.grant(this.role, 'kms:Decrypt', 'kms:GenerateDataKey');
    this.acknowledgeRoleFindings([
      this.planRunFunction,
      this.readEvalReportFunction,
      this.inspectJobFunction,
      this.datasetValidator.function,
      ...(this.judgeFunction ? [this.judgeFunction] : []),
    ]);
    this.notifyAbortedRuns(this.topic);

    new logs.MetricFilter(this, 'RunsRejectedFilter', {
      logGroup,
      filterPattern: logs.FilterPattern.all(
        logs.FilterPattern.stringValue('$.type', '=', 'ExecutionFailed'),
        logs.FilterPattern.stringValue('$.details.error', '=', GATE_REJECTED_ERROR),
      ),
      // This pipeline's own series (see metricRunsRejected): another pipeline's rejections never mix in.
      metricNamespace: this.metricRunsRejected().namespace,
      metricName: 'RunsRejected',
      metricValue: '1',
      defaultValue: 0,
    });
  }

  /** The state machine's ARN. */
  public get stateMachineArn(): string {
    return this.stateMachine.stateMachineArn;
  }

  /** Lets a principal start runs (and read them): what the CLI's role needs. */
  public grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    this.stateMachine.grantRead(grantee);
    return this.stateMachine.grantStartExecution(grantee);
  }

  /** Runs started. */
  public metricExecutionsStarted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricStarted(props);
  }

  /** Runs that succeeded (registered, and deployed when asked). */
  public metricExecutionsSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricSucceeded(props);
  }

  /** Runs that failed, gate rejections included (see {@link metricRunsRejected}). */
  public metricExecutionsFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricFailed(props);
  }

  /** Runs that hit the state machine's timeout. */
  public metricExecutionsTimedOut(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricTimedOut(props);
  }

  /** Runs stopped by someone. */
  public metricExecutionsAborted(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricAborted(props);
  }

  /** How long runs take, end to end (milliseconds). */
  public metricExecutionTime(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricTime(props);
  }

  /**
   * Runs the quality gate rejected (`Tuneyard.GateRejected`), from a metric filter on this state
   * machine's log group: `RunsRejected` in the namespace `Tuneyard/Pipeline/<state machine name>`,
   * this pipeline's own series, so another pipeline's rejections never mix in. (A metric filter
   * takes dimension values only from fields of the log event, and Step Functions' log events carry
   * no field that names the state machine: `execution_arn` names the run, a new metric per run.)
   */
  public metricRunsRejected(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: `${PIPELINE_METRICS_NAMESPACE}/${this.stateMachine.stateMachineName}`,
      metricName: 'RunsRejected',
      statistic: 'Sum',
      period: Duration.minutes(5),
      ...props,
    });
  }

  private buildDefinition(): sfn.IChainable {
    const props = this.props;
    const failure = (failName: string, stage: string) => this.failureChain(failName, stage);

    const planRun = new tasks.LambdaInvoke(this, PIPELINE_STATES.planRun, {
      lambdaFunction: this.planRunFunction,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({ request: sfn.JsonPath.entirePayload, executionName: sfn.JsonPath.executionName }),
      // No ResultPath (the default, "$"): the Lambda's {request, plan, datasetCheck} replaces the raw input.
      taskTimeout: sfn.Timeout.duration(Duration.minutes(15)),
      retryOnServiceExceptions: false,
    });
    this.addTransientRetries(planRun, 'lambda', true);
    planRun.addCatch(failure(PIPELINE_FAILURES.runRequestInvalid, PIPELINE_STATES.planRun), { errors: ['RunRequestInvalid'], resultPath: '$.error' });
    planRun.addCatch(failure(PIPELINE_FAILURES.planRunFailed, PIPELINE_STATES.planRun), { resultPath: '$.error' });

    const validate = new tasks.LambdaInvoke(this, PIPELINE_STATES.validateDataset, {
      lambdaFunction: this.datasetValidator.function,
      payloadResponseOnly: true,
      // {datasetName, datasetSha256, method, maxLength}, prepared by PlanRun.
      inputPath: '$.datasetCheck',
      resultPath: '$.validation',
      taskTimeout: sfn.Timeout.duration(Duration.minutes(15)),
      retryOnServiceExceptions: false,
    });
    this.addTransientRetries(validate, 'lambda', true);
    validate.addCatch(failure(PIPELINE_FAILURES.datasetInvalid, PIPELINE_STATES.validateDataset), { errors: ['DatasetInvalid'], resultPath: '$.error' });
    validate.addCatch(failure(PIPELINE_FAILURES.datasetValidationFailed, PIPELINE_STATES.validateDataset), { resultPath: '$.error' });

    const readReport = new tasks.LambdaInvoke(this, PIPELINE_STATES.readEvalReport, {
      lambdaFunction: this.readEvalReportFunction,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({
        reportUri: sfn.JsonPath.stringAt('$.plan.evalReport.s3Uri'),
        thresholds: sfn.JsonPath.objectAt('$.plan.thresholds'),
        forgettingProbe: sfn.JsonPath.objectAt('$.plan.forgettingProbe'),
        benchmarks: sfn.JsonPath.listAt('$.plan.benchmarks'),
        // null (PlanRun's) for a run without a judge, the JudgeAnswers result otherwise
        judge: sfn.JsonPath.objectAt('$.judge'),
      }),
      resultPath: '$.report',
      taskTimeout: sfn.Timeout.duration(Duration.minutes(15)),
      retryOnServiceExceptions: false,
    });
    this.addTransientRetries(readReport, 'lambda', true);
    readReport.addCatch(failure(PIPELINE_FAILURES.evalReportInvalid, PIPELINE_STATES.readEvalReport), { resultPath: '$.error' });

    const train = this.trainingJob.trainState(PIPELINE_STATES.train);
    const evaluate = this.trainingJob.evaluateState(PIPELINE_STATES.evaluate);
    this.recoverJob(train, 'Train', '$.training', failure(PIPELINE_FAILURES.trainingFailed, PIPELINE_STATES.train), evaluate);
    this.recoverJob(evaluate, 'Evaluate', '$.evaluation', failure(PIPELINE_FAILURES.evaluationFailed, PIPELINE_STATES.evaluate), this.judgeStates(readReport));

    const register = this.registry.registerState(PIPELINE_STATES.register);
    this.addTransientRetries(register, 'sagemaker');
    const registrationFailed = failure(PIPELINE_FAILURES.registrationFailed, PIPELINE_STATES.register);
    // Through the SDK integration throttling and ValidationException share one error name: only a cause that
    // says throttling is tried again (a few times, the ClientToken keeping it one registration).
    const throttled = sfn.Condition.or(
      sfn.Condition.stringMatches('$.error.Cause', '*ThrottlingException*'),
      sfn.Condition.stringMatches('$.error.Cause', '*Rate exceeded*'),
    );
    const waitToRegister = new sfn.Wait(this, 'RegisterThrottledWait', { time: sfn.WaitTime.duration(Duration.seconds(20)) }).next(register);
    register.addCatch(
      new sfn.Choice(this, 'RegisterThrottled')
        .when(sfn.Condition.not(throttled), registrationFailed)
        .when(
          sfn.Condition.not(sfn.Condition.isPresent('$.registerRetries')),
          new sfn.Pass(this, 'RegisterFirstRetry', { result: sfn.Result.fromObject({ count: 1 }), resultPath: '$.registerRetries' }).next(waitToRegister),
        )
        .when(
          sfn.Condition.numberLessThan('$.registerRetries.count', REGISTER_THROTTLE_RETRIES),
          new sfn.Pass(this, 'RegisterNextRetry', { parameters: { 'count.$': 'States.MathAdd($.registerRetries.count, 1)' }, resultPath: '$.registerRetries' }).next(waitToRegister),
        )
        .otherwise(registrationFailed),
      { errors: [SAGEMAKER_SDK_UNMODELLED_ERROR], resultPath: '$.error' },
    );
    register.addCatch(registrationFailed, { resultPath: '$.error' });

    // The report people read (report.html beside eval.json) and the command that prints and downloads it.
    const reportLinks = {
      htmlReport: sfn.JsonPath.format('{}{}/output/model/report.html', sfn.JsonPath.stringAt('$.plan.evalReportS3Uri'), sfn.JsonPath.stringAt('$.plan.evaluationJobName')),
      review: sfn.JsonPath.format('tuneyard eval {}', sfn.JsonPath.stringAt('$.plan.runId')),
    };
    const succeeded = this.notify(PIPELINE_STATES.notifySucceeded, 'Tuneyard run succeeded', {
      outcome: 'SUCCEEDED',
      runId: sfn.JsonPath.stringAt('$.plan.runId'),
      execution: sfn.JsonPath.executionId,
      report: sfn.JsonPath.stringAt('$.report.summary'),
      reportUri: sfn.JsonPath.stringAt('$.report.reportUri'),
      ...reportLinks,
    });
    const end = new sfn.Succeed(this, PIPELINE_STATES.succeeded);
    succeeded.addCatch(end, { resultPath: '$.notificationError' });
    succeeded.next(end);

    const rejectedFail = new sfn.Fail(this, PIPELINE_FAILURES.rejected, { error: GATE_REJECTED_ERROR, causePath: '$.report.summary' });
    const rejected = this.notify(PIPELINE_STATES.notifyRejected, 'Tuneyard run rejected by the quality gate', {
      outcome: 'REJECTED',
      runId: sfn.JsonPath.stringAt('$.plan.runId'),
      execution: sfn.JsonPath.executionId,
      report: sfn.JsonPath.stringAt('$.report.summary'),
      reportUri: sfn.JsonPath.stringAt('$.report.reportUri'),
      ...reportLinks,
      thresholds: sfn.JsonPath.objectAt('$.plan.thresholds'),
    });
    rejected.addCatch(rejectedFail, { resultPath: '$.notificationError' });
    rejected.next(rejectedFail);

    // ReadEvalReport decides (every threshold the run asked for, measured, or the run fails closed): one
    // definition in TypeScript (`gateDecision`), tested on the real trainer's reports; the Choice only routes.
    const gate = new sfn.Choice(this, PIPELINE_STATES.gate)
      .when(sfn.Condition.and(sfn.Condition.isBoolean('$.report.passed'), sfn.Condition.booleanEquals('$.report.passed', true)), register)
      .otherwise(rejected);
    readReport.next(gate);

    if (props.deployStage) {
      const deploy = props.deployStage.bind(this, {
        role: this.role,
        topic: this.topic,
        store: props.store,
        failure,
        addTransientRetries: (state, kind) => this.addTransientRetries(state, kind),
        createFunction: (id, options) =>
          createPlaneFunction(this, {
            ...options,
            ids: { function: id, role: `${id}Role`, logGroup: `${id}Logs` },
            reservedConcurrentExecutions: props.reserveConcurrency === false ? undefined : options.reservedConcurrentExecutions,
            logEncryptionKey: this.logEncryptionKey,
            logRetention: this.logRetention,
            removalPolicy: this.removalPolicy,
            vpc: props.vpc,
            vpcSubnets: props.vpcSubnets,
          }).function,
      });
      const deployRequested = new sfn.Choice(this, PIPELINE_STATES.deployRequested)
        .when(sfn.Condition.and(sfn.Condition.isPresent('$.plan.deploy'), sfn.Condition.not(sfn.Condition.isNull('$.plan.deploy'))), sfn.Chain.start(deploy).next(succeeded))
        .otherwise(succeeded);
      register.next(deployRequested);
    } else {
      register.next(succeeded);
    }

    return sfn.Chain.start(planRun).next(validate).next(train);
  }

  /**
   * The LLM judge between Evaluate and ReadEvalReport, when the pipeline allows judge models: JudgeRequested routes a
   * run without a judge (`$.plan.judge` null; `$.judge` stays the null PlanRun wrote) to ReadEvalReport; a run with
   * one goes JudgeStart → JudgeAnswers, invoked again from its cursor (JudgeDone) until every item is judged, and
   * JudgeResult puts `{reportUri, items, wins, ties, losses, winRate}` at `$.judge`.
   */
  private judgeStates(next: sfn.IChainable): sfn.IChainable {
    if (!this.judgeFunction) return next;
    const judge = new tasks.LambdaInvoke(this, PIPELINE_STATES.judgeAnswers, {
      lambdaFunction: this.judgeFunction,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({ judge: sfn.JsonPath.objectAt('$.plan.judge'), progress: sfn.JsonPath.objectAt('$.judgeProgress') }),
      resultPath: '$.judgeProgress',
      taskTimeout: sfn.Timeout.duration(JUDGE_FUNCTION_TIMEOUT.plus(Duration.minutes(1))),
      retryOnServiceExceptions: false,
    });
    // A part is written under a key named by its cursor: judging a part again overwrites it (idempotent).
    this.addTransientRetries(judge, 'lambda', true);
    // Bedrock throttling that outlasted the SDK's adaptive retries: wait, and judge the part again.
    judge.addRetry({ errors: ['ThrottlingException', 'ServiceUnavailableException', 'ModelNotReadyException'], interval: Duration.seconds(30), maxAttempts: 4, backoffRate: 2, jitterStrategy: sfn.JitterType.FULL, maxDelay: Duration.minutes(5) });
    judge.addCatch(this.failureChain(PIPELINE_FAILURES.judgeFailed, PIPELINE_STATES.judgeAnswers), { resultPath: '$.error' });
    const start = new sfn.Pass(this, 'JudgeStart', { result: sfn.Result.fromObject({ cursor: 0, parts: [], done: false }), resultPath: '$.judgeProgress' });
    const result = new sfn.Pass(this, 'JudgeResult', { inputPath: '$.judgeProgress.result', resultPath: '$.judge' });
    judge.next(
      new sfn.Choice(this, PIPELINE_STATES.judgeDone)
        .when(sfn.Condition.and(sfn.Condition.isBoolean('$.judgeProgress.done'), sfn.Condition.booleanEquals('$.judgeProgress.done', true)), result.next(next))
        .otherwise(judge),
    );
    return new sfn.Choice(this, PIPELINE_STATES.judgeRequested)
      .when(sfn.Condition.and(sfn.Condition.isPresent('$.plan.judge'), sfn.Condition.not(sfn.Condition.isNull('$.plan.judge'))), start.next(judge))
      .otherwise(next);
  }

  /**
   * The JudgeAnswers function, when `judgeModelIds` names any: it reads generations.jsonl, writes under
   * `eval-reports/<run>/judge/` and rewrites the evaluation's report.html with the judge's section, and may invoke the
   * named Bedrock models only.
   */
  private createJudgeFunction(modelIds: string[]): lambda.IFunction | undefined {
    if (modelIds.length === 0) return undefined;
    for (const id of modelIds) {
      if (!Token.isUnresolved(id) && !JUDGE_MODEL_ID.test(id)) {
        throw new TuneyardValidationError(
          `judgeModelIds: "${id}" is not a Bedrock model id or inference profile id: use e.g. "amazon.nova-pro-v1:0" or "us.anthropic.claude-3-5-haiku-20241022-v1:0" (not an ARN).`,
          this,
        );
      }
    }
    const stack = Stack.of(this);
    const fn = createPlaneFunction(this, {
      ids: { function: 'JudgeFunction', role: 'JudgeFunctionRole', logGroup: 'JudgeFunctionLogs' },
      entry: path.join(__dirname, 'handler', 'judge-answers'),
      description: 'Tuneyard: an LLM judge on Amazon Bedrock of the base and tuned answers of a run',
      memorySize: 512,
      timeout: JUDGE_FUNCTION_TIMEOUT,
      reservedConcurrentExecutions: this.props.reserveConcurrency === false ? undefined : 5,
      logEncryptionKey: this.logEncryptionKey,
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
      vpc: this.props.vpc,
      vpcSubnets: this.props.vpcSubnets,
      outsideVpcReason: 'the function calls S3 and Bedrock Runtime over TLS only.',
      policyScope: 'the eval-reports/ prefix, the named Bedrock models, the log group or a key',
    }).function;
    this.props.store.grantReadEvalReports(fn);
    const judgements = this.props.store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*/judge/*`);
    // The evaluation's report.html, rewritten with the judge's section (judge-report.ts): that one file of each eval job.
    const reports = this.props.store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*/output/model/report.html`);
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [judgements, reports] }));
    this.props.store.encryptionKey?.grant(fn, 'kms:GenerateDataKey');
    const models: string[] = [];
    const geographyModels: Record<string, string> = {};
    for (const id of modelIds) {
      const geography = inferenceProfileGeography(id);
      if (geography === undefined) {
        models.push(stack.formatArn({ service: 'bedrock', account: '', resource: 'foundation-model', resourceName: id }));
      } else {
        // A cross-region profile routes to the foundation model in any region of its geography.
        models.push(stack.formatArn({ service: 'bedrock', resource: 'inference-profile', resourceName: id }));
        const model = stack.formatArn({ service: 'bedrock', region: '*', account: '', resource: 'foundation-model', resourceName: id.slice(geography.length + 1) });
        models.push(model);
        geographyModels[id] = model;
      }
    }
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['bedrock:InvokeModel'], resources: models }));
    acknowledgeOnGrantee(fn, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, this.props.store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*`))}]`]:
        "Reads the generations.jsonl of any run under eval-reports/: the run is chosen per execution (the plan names the object).",
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, judgements)}]`]: "Writes the judgements of any run, under that run's eval-reports/<run>/judge/ only.",
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, reports)}]`]:
        "Rewrites the report.html of any run's evaluation job (eval-reports/<run>/<job>/output/model/report.html) with the judge's section, and no other object there.",
      ...Object.fromEntries(
        Object.entries(geographyModels).map(([id, model]) => [
          `AwsSolutions-IAM5[Resource::${nagResource(stack, model)}]`,
          `The cross-region inference profile ${id} sends each request to this one model in a region of its geography, chosen per request.`,
        ]),
      ),
    });
    return fn;
  }

  /**
   * What follows a failed Train or Evaluate state: Inspect{Stage} looks at the job (its name is
   * deterministic) and the run adopts a running job (waits for it), goes on with a completed one,
   * creates it again after throttling (a few times), or fails with the job's reason and a fix.
   */
  private recoverJob(task: PipelineTaskState, stage: 'Train' | 'Evaluate', resultPath: string, failed: sfn.IChainable, next: sfn.IChainable): void {
    const what = stage === 'Train' ? 'Training' : 'Evaluation';
    const inspectionPath = stage === 'Train' ? '$.trainInspection' : '$.evaluateInspection';
    const inspect = new tasks.LambdaInvoke(this, stage === 'Train' ? PIPELINE_STATES.inspectTraining : PIPELINE_STATES.inspectEvaluation, {
      lambdaFunction: this.inspectJobFunction,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({ stage, state: sfn.JsonPath.entirePayload }),
      resultPath: inspectionPath,
      taskTimeout: sfn.Timeout.duration(Duration.minutes(2)),
      retryOnServiceExceptions: false,
    });
    this.addTransientRetries(inspect, 'lambda', true);
    // The inspection's own failure must not hide the job's: notify the original error.
    inspect.addCatch(failed, { resultPath: '$.inspectionError' });
    task.addCatch(inspect, { resultPath: '$.error' });
    task.next(next);

    const adopted = new sfn.Pass(this, `${what}JobCompleted`, { inputPath: `${inspectionPath}.job`, resultPath });
    const waitForJob = new sfn.Wait(this, `${what}JobRunning`, { time: sfn.WaitTime.secondsPath(`${inspectionPath}.waitSeconds`) });
    const waitToRetry = new sfn.Wait(this, `${what}CreateThrottled`, { time: sfn.WaitTime.secondsPath(`${inspectionPath}.waitSeconds`) });
    const explained = new sfn.Pass(this, `${what}JobFailed`, { inputPath: `${inspectionPath}.error`, resultPath: '$.error' });
    const outcome = `${inspectionPath}.outcome`;
    inspect.next(
      new sfn.Choice(this, `${what}JobOutcome`)
        .when(sfn.Condition.stringEquals(outcome, 'completed'), adopted.next(next))
        .when(sfn.Condition.stringEquals(outcome, 'running'), waitForJob.next(inspect))
        .when(sfn.Condition.stringEquals(outcome, 'retry'), waitToRetry.next(task))
        .otherwise(explained.next(failed)),
    );
  }

  /** Combinations of collaborators that synthesize but cannot run fail here, naming the props and the fix. */
  private validateCollaborators(props: FineTuningPipelineProps): void {
    const bucketOf = (store: DatasetStore) => (Token.isUnresolved(store.bucket.bucketName) ? store.node.path : `bucket ${store.bucket.bucketName}`);
    const sameStore = (other: DatasetStore) =>
      other === props.store || (!Token.isUnresolved(other.bucket.bucketName) && other.bucket.bucketName === props.store.bucket.bucketName);
    if (props.trainingJob && !sameStore(props.trainingJob.store)) {
      throw new TuneyardValidationError(
        `trainingJob works on another data store (${bucketOf(props.trainingJob.store)}) than the pipeline's store (${bucketOf(props.store)}): ` +
          "its jobs would read datasets and write eval reports where PlanRun and ReadEvalReport do not look. Create the FineTuningJob with the pipeline's store, or omit trainingJob.",
        this,
      );
    }
    if (props.datasetValidator && !sameStore(props.datasetValidator.store)) {
      throw new TuneyardValidationError(
        `datasetValidator reads another data store (${bucketOf(props.datasetValidator.store)}) than the pipeline's store (${bucketOf(props.store)}): ` +
          "it would validate datasets that the training jobs never read. Create the DatasetValidationFunction with the pipeline's store, or omit datasetValidator.",
        this,
      );
    }
    const prefix = props.trainingJob?.jobNamePrefix;
    if (prefix !== undefined && !Token.isUnresolved(prefix) && !isJobNamePrefix(prefix)) {
      throw new TuneyardValidationError(
        `trainingJob.jobNamePrefix "${prefix}" cannot start the job names: use 1-${MAX_JOB_NAME_PREFIX_LENGTH} lower-case letters, digits or hyphens starting with a letter or digit ` +
          '(job names are <prefix><run id of up to 48 characters>-train, at most 63 characters), e.g. "teama-".',
        this,
      );
    }
    if (!props.trainingJob && !props.store.encryptionKey) {
      throw new TuneyardValidationError(
        'store has no KMS key, and the default trainingJob encrypts training volumes and outputs with the store\'s key: ' +
          'pass trainingJob: new FineTuningJob(scope, id, { store, encryptionKey }), or give the store an encryptionKey.',
        this,
      );
    }
    if (!props.vpc && props.vpcSubnets) {
      throw new TuneyardValidationError('vpcSubnets places the functions in a VPC, but no vpc was given: pass vpc too, or remove vpcSubnets.', this);
    }
  }

  /**
   * A stopped execution (`tuneyard cancel`, StopExecution, the console) ends without running a state,
   * so the state machine cannot say so itself: an EventBridge rule on the execution's status change
   * publishes it to the topic, with the error and cause StopExecution was given (`tuneyard cancel`
   * names who cancelled).
   */
  private notifyAbortedRuns(topic: sns.ITopic): void {
    const field = (path: string) => events.EventField.fromPath(path);
    new events.Rule(this, 'RunsAborted', {
      description: 'Tuneyard: notifies fine-tuning runs that were stopped',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED'], stateMachineArn: [this.stateMachine.stateMachineArn] },
      },
      targets: [
        new targets.SnsTopic(topic, {
          message: events.RuleTargetInput.fromObject({
            outcome: 'ABORTED',
            runId: field('$.detail.name'),
            execution: field('$.detail.executionArn'),
            error: field('$.detail.error'),
            cause: field('$.detail.cause'),
            stoppedAt: field('$.time'),
          }),
        }),
      ],
    });
    // targets.SnsTopic also lets EventBridge use the topic's key (a key policy edit: on an imported key its owner must).
  }

  /** Notify{Stage}Failed → Fail: the notification carries run id, stage, error and cause. */
  private failureChain(failName: string, stage: string): sfn.IChainable {
    const fail = new sfn.Fail(this, failName, { errorPath: '$.error.Error', causePath: '$.error.Cause' });
    const notify = this.notify(`Notify${failName}`, `Tuneyard run failed: ${stage}`, {
      outcome: 'FAILED',
      stage,
      // PlanRun failures have no plan yet: the execution name is the run id the CLI chose.
      runId: sfn.JsonPath.executionName,
      execution: sfn.JsonPath.executionId,
      error: sfn.JsonPath.stringAt('$.error.Error'),
      cause: sfn.JsonPath.stringAt('$.error.Cause'),
    });
    // A failed notification must not hide the run's own failure.
    notify.addCatch(fail, { resultPath: '$.notificationError' });
    return notify.next(fail);
  }

  private notify(id: string, subject: string, message: Record<string, unknown>): tasks.SnsPublish {
    const task = new tasks.SnsPublish(this, id, {
      topic: this.topic,
      subject,
      message: sfn.TaskInput.fromObject(message),
      resultPath: sfn.JsonPath.DISCARD,
      taskTimeout: sfn.Timeout.duration(Duration.minutes(1)),
    });
    this.addTransientRetries(task, 'sns');
    return task;
  }

  /**
   * Retries throttling and transient errors of one kind of task with exponential backoff and
   * full jitter. `idempotent` tasks (pure or read-only Lambdas) also retry `States.Timeout`.
   */
  private addTransientRetries(state: PipelineTaskState, kind: 'lambda' | 'sagemaker' | 'sns', idempotent = false): void {
    const scale = (s: number) => Duration.seconds(s);
    const common = { backoffRate: 2, jitterStrategy: sfn.JitterType.FULL };
    if (kind === 'lambda') {
      state.addRetry({ ...common, errors: LAMBDA_TRANSIENT_ERRORS, interval: scale(2), maxAttempts: 6, maxDelay: scale(60) });
      if (idempotent) state.addRetry({ ...common, errors: [sfn.Errors.TIMEOUT], interval: scale(5), maxAttempts: 1, maxDelay: scale(60) });
    } else if (kind === 'sagemaker') {
      state.addRetry({ ...common, errors: SAGEMAKER_SDK_TRANSIENT_ERRORS, interval: scale(5), maxAttempts: 5, maxDelay: scale(60) });
    } else {
      state.addRetry({ ...common, errors: SNS_TRANSIENT_ERRORS, interval: scale(1), maxAttempts: 4, maxDelay: scale(30) });
    }
  }

  private acknowledgeRoleFindings(functions: lambda.IFunction[]): void {
    const policy = this.role.node.tryFindChild('DefaultPolicy') ?? this.role;
    const stack = Stack.of(this);
    for (const fn of functions) {
      Validations.of(policy).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${nagResource(stack, fn.functionArn)}:*]`,
        reason: 'lambda:InvokeFunction on the versions and aliases of this one function (the CDK grant for a Lambda task).',
      });
    }
    Validations.of(policy).acknowledge({
      id: 'AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
      reason: "The SNS publish grant on the topic's own key (CDK's TopicGrants): SNS needs a data key of that one key to encrypt the message.",
    });
    Validations.of(policy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'X-Ray PutTraceSegments/GetSamplingRules and the CloudWatch Logs delivery actions (logs:*LogDelivery*) support no resource-level permissions.',
    });
    acknowledge(
      policy,
      inControlPacks('IAMNoInlinePolicy', "The statements belong to the state machine's own role alone; each is scoped to one function, the training-job prefix, the topic or a key."),
    );
  }
  /**
   * A run's graders go to its evaluation job as a file (a hyperparameter holds 2,500 characters): PlanRun writes
   * `eval-reports/<run>/graders.json` (that object of each run only) and the job reads it as its `graders` channel
   * (FineTuningJob's role reads it).
   */
  private grantGradersFile(store: DatasetStore): void {
    const stack = Stack.of(this);
    const graders = store.bucket.arnForObjects(`${DATA_PREFIXES.evalReports}*/graders.json`);
    this.planRunFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [graders] }));
    store.encryptionKey?.grant(this.planRunFunction, 'kms:GenerateDataKey');
    acknowledgeOnGrantee(this.planRunFunction, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, graders)}]`]: 'Writes the graders.json of any run (eval-reports/<run>/graders.json, named at run time), and no other object there.',
    });
  }

  /**
   * A run with a rewardModel is refused when the reward model's vocabulary is not its base model's: PlanRun lists the
   * two model folders (a staged base model under base-models/, a reward run's model under artifacts/) and reads their
   * tokenizer.json; a grpo or rloo run without recipe.chatTemplate is refused when its staged base model's tokenizer has
   * no chat template: PlanRun lists that folder (chat_template.jinja is looked for there, not read) and reads its
   * tokenizer_config.json. No other object there is read.
   */
  private grantModelTokenizers(store: DatasetStore): void {
    const stack = Stack.of(this);
    const tokenizers = [DATA_PREFIXES.baseModels, DATA_PREFIXES.artifacts].map((prefix) => store.bucket.arnForObjects(`${prefix}*/tokenizer.json`));
    const baseTokenizerConfig = store.bucket.arnForObjects(`${DATA_PREFIXES.baseModels}*/tokenizer_config.json`);
    this.planRunFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [...tokenizers, baseTokenizerConfig] }));
    this.planRunFunction.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [store.bucket.bucketArn],
        conditions: { StringLike: { 's3:prefix': [`${DATA_PREFIXES.baseModels}*`, `${DATA_PREFIXES.artifacts}*`] } },
      }),
    );
    store.encryptionKey?.grantDecrypt(this.planRunFunction);
    acknowledgeOnGrantee(this.planRunFunction, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, tokenizers[0])}]`]:
        "Reads the tokenizer.json of the run's staged base model (base-models/<name>/, named per request) to compare it with the reward model's, and no other object there.",
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, tokenizers[1])}]`]:
        "Reads the tokenizer.json of the run's reward model (a reward run's model folder under artifacts/, named per request), and no other object there.",
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, baseTokenizerConfig)}]`]:
        "Reads the tokenizer_config.json of a grpo or rloo run's staged base model (base-models/<name>/, named per request) to find its chat template, and no other object there.",
    });
  }

  private createFunction(id: string, entry: string, description: string, environment: Record<string, string> = {}, memorySize = 512): lambda.Function {
    return createPlaneFunction(this, {
      ids: { function: id, role: `${id}Role`, logGroup: `${id}Logs` },
      entry: path.join(__dirname, 'handler', entry),
      description,
      memorySize,
      timeout: Duration.minutes(1),
      reservedConcurrentExecutions: this.props.reserveConcurrency === false ? undefined : 5,
      environment,
      logEncryptionKey: this.logEncryptionKey,
      logRetention: this.logRetention,
      removalPolicy: this.removalPolicy,
      vpc: this.props.vpc,
      vpcSubnets: this.props.vpcSubnets,
      outsideVpcReason: 'the function only calls S3 over TLS (ReadEvalReport reads eval.json, PlanRun writes graders.json and reads tokenizer.json and tokenizer_config.json files) or nothing at all.',
      policyScope: 'a prefix, the log group or a key',
    }).function;
  }


}
