import * as path from 'node:path';
import { Duration, Names, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { DEPLOY_ERRORS, deploymentNamePrefix } from '../../lib/deploy-contract';
import { TuneyardValidationError } from '../../lib/errors';
import { DATA_PREFIXES } from '../../lib/layout';
import { acknowledgeOnGrantee, nagResource } from '../../lib/nag';
import { DEPLOY_WAIT } from '../../lib/run-request';
import type { DeployArtifact, IPipelineStage, IPipelineStageContext } from '../fine-tuning-pipeline';
import { DEPLOY_RUN_ENV } from './deploy-contract';
import { VllmEndpoint } from './vllm-endpoint';

/** The states of the Deploy stage (names are a contract with tests and dashboards). */
export const DEPLOY_STATES = {
  start: 'DeployStart',
  status: 'DeployStatus',
  wait: 'DeployWait',
  deployed: 'Deployed',
} as const;

/** The Fail states of the Deploy stage. */
export const DEPLOY_FAILURES = {
  targetUnknown: 'DeployTargetUnknown',
  notApproved: 'DeployNotApproved',
  failed: 'DeployFailed',
  rolledBack: 'DeployRolledBack',
  timedOut: 'DeployTimedOut',
} as const;

/** Properties of a {@link VllmDeployStage}. */
export interface VllmDeployStageProps {
  /** The endpoint that runs deploy to (the request's `deploy.endpointName` must name it). */
  readonly endpoint: VllmEndpoint;
  /**
   * The wait between two status polls (1 second to 5 minutes).
   *
   * @default Duration.seconds(30) (`DEPLOY_WAIT`, shared with `tuneyard deploy --wait`)
   */
  readonly pollInterval?: Duration;
  /**
   * Polls before the stage gives up (the deployment itself goes on, and rolls back on its alarms):
   * the stage waits at most `maxPolls` × `pollInterval` from the start of the deployment.
   *
   * @default 180 (90 minutes at the default interval; `DEPLOY_WAIT`)
   */
  readonly maxPolls?: number;
  /**
   * What the names of the adapters this stage deploys start with (inference-component endpoints
   * only): the Deploy function may create and update only the inference components so named, and
   * PlanRun refuses a run whose `deploy.adapterName` lacks the prefix, before any GPU time. Where
   * several pipelines deploy to one endpoint, give each a prefix that does not start another's
   * (`team-a-`, `team-b-`): synth fails when two overlap, or when the prefix would take in an
   * adapter the endpoint's own stack manages (`VllmEndpoint.addAdapter`).
   *
   * @default - the endpoint's name and a hyphen (`chat-` for endpoint `chat`)
   */
  readonly adapterNamePrefix?: string;
}

/** A name prefix that a valid SageMaker name can start with, leaving room for at least one more character. */
const NAME_PREFIX_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9-]{0,61}$/;

/**
 * A Deploy stage's claim on the adapter names of its endpoint: a construct (no resources) under the
 * endpoint, so that synth can see every stage that deploys adapters to it, and the adapters its own
 * stack adds.
 */
class AdapterNamePrefixClaim extends Construct {
  constructor(
    private readonly endpoint: VllmEndpoint,
    id: string,
    readonly prefix: string,
    readonly pipelinePath: string,
  ) {
    super(endpoint, id);
    this.node.addValidation({ validate: () => this.overlaps() });
  }

  private overlaps(): string[] {
    if (Token.isUnresolved(this.prefix)) return [];
    const mine = this.prefix.toLowerCase();
    const startsEither = (name: string) => !Token.isUnresolved(name) && (name.toLowerCase().startsWith(mine) || mine.startsWith(name.toLowerCase()));
    const errors: string[] = [];
    const claims = this.endpoint.node.children.filter((c): c is AdapterNamePrefixClaim => c instanceof AdapterNamePrefixClaim);
    // Each overlapping pair is reported once, by its first claim.
    for (const other of claims.slice(claims.indexOf(this) + 1)) {
      if (startsEither(other.prefix)) {
        errors.push(
          `the Deploy stages of ${this.pipelinePath} and ${other.pipelinePath} deploy adapters to ${this.endpoint.node.path} under the prefixes "${this.prefix}" and "${other.prefix}", ` +
            "one of which starts the other: either pipeline's runs could replace the other's adapters. Give each VllmDeployStage an adapterNamePrefix that starts no other's, e.g. \"team-a-\" and \"team-b-\".",
        );
      }
    }
    const managed = this.endpoint.adapterNames.filter((name) => !Token.isUnresolved(name) && name.toLowerCase().startsWith(mine));
    if (managed.length > 0) {
      errors.push(
        `the Deploy stage of ${this.pipelinePath} deploys adapters named "${this.prefix}*" to ${this.endpoint.node.path}, which takes in its CloudFormation-managed adapters ${managed.join(', ')}: ` +
          "a run would replace them behind the stack's back. Rename those adapters or give the VllmDeployStage another adapterNamePrefix.",
      );
    }
    return errors;
  }
}

/**
 * The pipeline's Deploy stage for a {@link VllmEndpoint}, plugged in through
 * `FineTuningPipelineProps.deployStage`. It runs after Register when the run asks for a
 * deployment (`deploy: { endpointName, adapterName }` in the RunRequest; off by default) and
 * only for an approved model (`autoApprove`).
 *
 * A Lambda function makes the deployment with the calls `tuneyard deploy` makes (one definition,
 * lib/deploy.ts), for the package Register created and the run's model folder:
 *
 * - Inference-component endpoints: the run's adapter (`adapter.tar.gz`) becomes (or replaces) the
 *   adapter component `adapterName` on the base component, then waits for `InService`.
 * - Single-model endpoints: CreateModel from the run's merged model folder (`full/`) with the
 *   current model's image, environment, role and network; CreateEndpointConfig as a copy of the
 *   endpoint's current configuration as SageMaker describes it (data capture, KMS key, every
 *   variant setting) with the new model; UpdateEndpoint with the endpoint's blue/green or rolling
 *   DeploymentConfig and auto-rollback alarms; then it waits until the endpoint is InService on the
 *   new configuration. Back in service on its previous configuration means SageMaker rolled back:
 *   the rollback stands and the run fails (`DeployRolledBack`); `Failed`, `UpdateRollbackFailed`
 *   and `OutOfService` fail it too (`DeployFailed`).
 *
 * States: DeployStart (checks the target and the approval, plans, writes, waits up to ~13 minutes)
 * → DeployStatus → [DeployWait (waits up to ~13 minutes more) → DeployStatus]… → Deployed. A
 * deployment of under ~13 minutes costs 3 state transitions, each further ~13 minutes 2 more (90
 * minutes: 15). A run that asks for another endpoint (`DeployTargetUnknown`) or whose model is not
 * approved (`DeployNotApproved`) is refused before anything is read or written.
 * The wait is bounded (`maxPolls` × `pollInterval`); giving up fails the run (`DeployTimedOut`) but
 * does not stop the deployment, which SageMaker finishes or rolls back on its own.
 *
 * The function may deploy to this endpoint only: on an inference-component endpoint, describe it
 * and its base component and create and update the adapter components named `adapterNamePrefix*`
 * (never the base component); on a single-model endpoint, describe and update it, create models
 * and endpoint configs named `<endpoint name>-*`, pass the endpoint's role to SageMaker, read its
 * rollback alarms, and let SageMaker use its volume key.
 */
export class VllmDeployStage implements IPipelineStage {
  constructor(private readonly props: VllmDeployStageProps) {}

  /** An inference-component endpoint takes the run's adapter; a single-model endpoint its full weights. */
  public get deploys(): DeployArtifact | undefined {
    return this.props.endpoint.usesInferenceComponents ? 'adapter' : 'full-weights';
  }

  /** What the names of the adapters this stage deploys start with; undefined for a single-model endpoint (no adapters). */
  public get adapterNamePrefix(): string | undefined {
    const ep = this.props.endpoint;
    if (!ep.usesInferenceComponents) return undefined;
    return this.props.adapterNamePrefix ?? `${ep.endpointName}-`;
  }

  public bind(scope: Construct, context: IPipelineStageContext): sfn.IChainable {
    const ep = this.props.endpoint;
    const pollSeconds = (this.props.pollInterval ?? Duration.seconds(DEPLOY_WAIT.pollSeconds)).toSeconds();
    const maxPolls = this.props.maxPolls ?? DEPLOY_WAIT.maxPolls;
    if (!Token.isUnresolved(pollSeconds) && (pollSeconds < 1 || pollSeconds > 300)) {
      throw new TuneyardValidationError(`pollInterval must be 1 second to 5 minutes (it must fit a Lambda invocation many times); got ${pollSeconds} s. Use e.g. Duration.seconds(30).`, ep);
    }
    if (!Token.isUnresolved(maxPolls) && (!Number.isInteger(maxPolls) || maxPolls < 1)) {
      throw new TuneyardValidationError(`maxPolls must be a whole number of at least 1; got ${maxPolls}. Use e.g. 180 (90 minutes at 30 s).`, ep);
    }
    const adapterPrefix = this.adapterNamePrefix;
    if (this.props.adapterNamePrefix !== undefined && adapterPrefix === undefined) {
      throw new TuneyardValidationError(
        `adapterNamePrefix "${this.props.adapterNamePrefix}": endpoint ${ep.node.path} serves one model, not adapters as inference components. Leave adapterNamePrefix out.`,
        ep,
      );
    }
    if (adapterPrefix !== undefined && !Token.isUnresolved(adapterPrefix) && !NAME_PREFIX_PATTERN.test(adapterPrefix)) {
      throw new TuneyardValidationError(
        `adapterNamePrefix "${adapterPrefix}" is invalid: adapter names are 1-63 letters, digits and hyphens starting with a letter or digit, so the prefix must be such a start of at most 62 characters. Use e.g. "team-a-".`,
        ep,
      );
    }
    if (adapterPrefix !== undefined) new AdapterNamePrefixClaim(ep, `DeployStage${Names.uniqueId(scope)}`, adapterPrefix, scope.node.path);
    this.grantEndpointReadArtifacts(context);

    const fn = context.createFunction('DeployFunction', {
      entry: path.join(__dirname, 'handler', 'deploy-run'),
      description: `Tuneyard: deploys a run's model to the vLLM endpoint ${ep.node.path} and waits for it`,
      memorySize: 256,
      // Each invocation waits until ~2 minutes before its timeout, then hands over to the next.
      timeout: Duration.minutes(15),
      reservedConcurrentExecutions: 2,
      environment: {
        [DEPLOY_RUN_ENV.endpointName]: ep.endpointName,
        [DEPLOY_RUN_ENV.pollSeconds]: String(pollSeconds),
        [DEPLOY_RUN_ENV.maxPolls]: String(maxPolls),
        ...(ep.baseComponentName
          ? { [DEPLOY_RUN_ENV.baseComponentName]: ep.baseComponentName }
          : { [DEPLOY_RUN_ENV.deploymentConfig]: Stack.of(scope).toJsonString(ep.apiDeploymentConfig) }),
      },
      outsideVpcReason: 'the function only calls the SageMaker API (describe, create and update of this endpoint) over TLS.',
      policyScope: "this endpoint, its components, models and endpoint configs named after it, its role, rollback alarms and key, or the log group",
    });
    this.grantDeploy(scope, fn, adapterPrefix);
    acknowledgeOnGrantee(context.role, {
      [`AwsSolutions-IAM5[Resource::${nagResource(Stack.of(scope), fn.functionArn)}:*]`]:
        'lambda:InvokeFunction on the versions and aliases of the Deploy function (the CDK grant for a Lambda task).',
    });

    // One notify-and-fail chain per Fail state, shared by both tasks.
    const failures = new Map<string, sfn.IChainable>();
    const fail = (name: string) => {
      if (!failures.has(name)) failures.set(name, context.failure(name, 'Deploy'));
      return failures.get(name)!;
    };

    // The function's result at $.deployment says what was deployed and how it ended.
    const deployed = new sfn.Pass(scope, DEPLOY_STATES.deployed);
    const start = new tasks.LambdaInvoke(scope, DEPLOY_STATES.start, {
      lambdaFunction: fn,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({
        action: 'start',
        runId: sfn.JsonPath.stringAt('$.plan.runId'),
        modelApprovalStatus: sfn.JsonPath.stringAt('$.plan.modelApprovalStatus'),
        // The whole deploy object: adapterName is there for adapter endpoints only (PlanRun asks for it there).
        deploy: sfn.JsonPath.objectAt('$.plan.deploy'),
        modelPackageArn: sfn.JsonPath.stringAt('$.registration.ModelPackageArn'),
        modelData: sfn.JsonPath.stringAt('$.plan.modelArtifactS3Uri'),
      }),
      resultPath: '$.deployment',
      taskTimeout: sfn.Timeout.duration(Duration.minutes(16)),
      retryOnServiceExceptions: false,
    });
    const wait = new tasks.LambdaInvoke(scope, DEPLOY_STATES.wait, {
      lambdaFunction: fn,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({ action: 'wait', deployment: sfn.JsonPath.objectAt('$.deployment') }),
      resultPath: '$.deployment',
      taskTimeout: sfn.Timeout.duration(Duration.minutes(16)),
      retryOnServiceExceptions: false,
    });
    const caught: Array<[string, string]> = [
      [DEPLOY_ERRORS.targetUnknown, DEPLOY_FAILURES.targetUnknown],
      [DEPLOY_ERRORS.notApproved, DEPLOY_FAILURES.notApproved],
      [DEPLOY_ERRORS.rolledBack, DEPLOY_FAILURES.rolledBack],
      [DEPLOY_ERRORS.timedOut, DEPLOY_FAILURES.timedOut],
    ];
    for (const task of [start, wait]) {
      context.addTransientRetries(task, 'lambda');
      for (const [error, failName] of caught) task.addCatch(fail(failName), { errors: [error], resultPath: '$.error' });
      task.addCatch(fail(DEPLOY_FAILURES.failed), { resultPath: '$.error' });
    }
    const status = new sfn.Choice(scope, DEPLOY_STATES.status)
      .when(sfn.Condition.stringEquals('$.deployment.outcome', 'deployed'), deployed)
      .otherwise(wait);
    start.next(status);
    wait.next(status);
    return sfn.Chain.custom(start, [deployed], deployed);
  }

  /**
   * What the Deploy function may do: only to this endpoint, its adapter components named
   * `<adapter prefix>*`, and the models and endpoint configs it names `<endpoint name>-<hash>`.
   */
  private grantDeploy(scope: Construct, fn: lambda.IFunction, adapterPrefix: string | undefined): void {
    const ep = this.props.endpoint;
    const stack = Stack.of(scope);
    const arn = (resource: string, resourceName: string) => stack.formatArn({ service: 'sagemaker', resource, resourceName });
    const allow = (actions: string[], resources: string[], conditions?: Record<string, Record<string, unknown>>) =>
      fn.addToRolePolicy(new iam.PolicyStatement({ actions, resources, conditions }));
    // SageMaker ARNs carry the name in lower case: both spellings, when they differ.
    const spellings = (name: string) => (Token.isUnresolved(name) ? [name] : [...new Set([name, name.toLowerCase()])]);
    const findings: Record<string, string> = {};
    // The CloudFormation-made config the endpoint starts on (the plan copies it); Ref is its ARN.
    const initialConfig = ep.endpointConfig.ref;
    allow(['sagemaker:DescribeEndpoint'], [ep.endpointArn]);

    if (ep.usesInferenceComponents && adapterPrefix !== undefined && ep.baseComponentName) {
      const adapters = spellings(adapterPrefix).map((p) => arn('inference-component', `${p}*`));
      const base = spellings(ep.baseComponentName).map((name) => arn('inference-component', name));
      allow(['sagemaker:DescribeEndpointConfig'], [initialConfig]);
      allow(['sagemaker:DescribeInferenceComponent'], [...base, ...adapters]);
      allow(['sagemaker:UpdateInferenceComponent'], adapters);
      allow(['sagemaker:CreateInferenceComponent'], [...adapters, ep.endpointArn]);
      const baseName = ep.baseComponentName;
      if (Token.isUnresolved(baseName) || Token.isUnresolved(adapterPrefix) || baseName.toLowerCase().startsWith(adapterPrefix.toLowerCase())) {
        // The base component's name starts with the prefix (a generated endpoint name and the default prefix): never write it.
        fn.addToRolePolicy(
          new iam.PolicyStatement({ effect: iam.Effect.DENY, actions: ['sagemaker:CreateInferenceComponent', 'sagemaker:UpdateInferenceComponent'], resources: base }),
        );
      }
      for (const resource of adapters) {
        findings[`AwsSolutions-IAM5[Resource::${nagResource(stack, resource)}]`] =
          `Adapter components are named by each run request (deploy.adapterName, which PlanRun requires to start with ${adapterPrefix}), so their names are not known at synth; the actions are describe, create (on this endpoint only) and update of this stage's adapter components.`;
      }
    } else {
      const prefix = Token.isUnresolved(ep.endpointName) ? `${ep.endpointName}-` : deploymentNamePrefix(ep.endpointName);
      const prefixes = spellings(prefix);
      const models = prefixes.map((p) => arn('model', `${p}*`));
      const configs = prefixes.map((p) => arn('endpoint-config', `${p}*`));
      allow(['sagemaker:DescribeModel'], [ep.model.ref, ...models]);
      allow(['sagemaker:CreateModel'], models);
      allow(['sagemaker:DescribeEndpointConfig'], [initialConfig, ...configs]);
      allow(['sagemaker:CreateEndpointConfig'], configs);
      allow(['sagemaker:UpdateEndpoint'], [ep.endpointArn, ...configs]);
      // CreateModel passes the endpoint's role (copied from the current model).
      allow(['iam:PassRole'], [ep.role.roleArn], { StringEquals: { 'iam:PassedToService': 'sagemaker.amazonaws.com' } });
      // UpdateEndpoint checks the auto-rollback alarms.
      allow(['cloudwatch:DescribeAlarms'], [ep.invocation5xxAlarm.alarmArn, ep.modelLatencyAlarm.alarmArn]);
      if (ep.encryptionKey) {
        // EBS-backed instance types: the new endpoint config's KmsKeyId lets SageMaker encrypt the volumes, with a grant the caller makes.
        allow(['kms:CreateGrant'], [ep.encryptionKey.keyArn], { Bool: { 'kms:GrantIsForAWSResource': true } });
        allow(['kms:DescribeKey'], [ep.encryptionKey.keyArn]);
      }
      for (const resource of [...models, ...configs]) {
        findings[`AwsSolutions-IAM5[Resource::${nagResource(stack, resource)}]`] =
          "Each deployment creates its own model and endpoint config, named <endpoint name>-<hash of the model package ARN> at run time; the grant covers only this endpoint's prefix.";
      }
    }
    acknowledgeOnGrantee(fn, findings);
  }

  /**
   * SageMaker loads the run's adapter (`ArtifactUrl`) or merged model (`ModelDataSource`) with
   * the endpoint's execution role, which by itself may read only the endpoint's base model: give
   * it read access to the runs' outputs under `artifacts/`.
   */
  private grantEndpointReadArtifacts(context: IPipelineStageContext): void {
    const role = this.props.endpoint.role;
    context.store.grantReadArtifacts(role);
    const stack = Stack.of(this.props.endpoint);
    acknowledgeOnGrantee(role, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, context.store.bucket.arnForObjects(`${DATA_PREFIXES.artifacts}*`))}]`]:
        'The Deploy stage serves the adapter or merged model of each run from artifacts/<run id>/, named at run time; read-only.',
    });
  }
}
