import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { DATA_PREFIXES, MODEL_OUTPUT } from '../../lib/layout';
import { DEPLOY_WAIT } from '../../lib/run-request';
import { acknowledgeOnGrantee, nagResource } from '../../lib/nag';
import type { DeployArtifact, IPipelineStage, PipelineStageContext } from '../fine-tuning-pipeline';
import { VllmEndpoint } from './vllm-endpoint';

/** The states of the Deploy stage (names are a contract with tests and dashboards). */
export const DEPLOY_STATES = {
  checkTarget: 'DeployCheckTarget',
  checkApproval: 'DeployCheckApproval',
  findAdapter: 'DeployFindAdapter',
  createAdapter: 'DeployCreateAdapter',
  updateAdapter: 'DeployUpdateAdapter',
  createModel: 'DeployCreateModel',
  createEndpointConfig: 'DeployCreateEndpointConfig',
  updateEndpoint: 'DeployUpdateEndpoint',
  startPolling: 'DeployStartPolling',
  wait: 'DeployWait',
  describe: 'DeployDescribe',
  status: 'DeployStatus',
  countPoll: 'DeployCountPoll',
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
   * Where the adapter tarball is, relative to the run's model artifact folder (`$.plan.modelArtifactS3Uri`).
   * Inference components load adapters from a `.tar.gz`.
   *
   * @default 'adapter.tar.gz'
   */
  readonly adapterArtifact?: string;
  /**
   * Where the merged model folder is, relative to the run's model artifact folder (single-model endpoints).
   *
   * @default 'full/'
   */
  readonly mergedModelFolder?: string;
  /**
   * The wait between two status polls.
   *
   * @default Duration.seconds(30) (`DEPLOY_WAIT`, shared with `tuneyard deploy --wait`)
   */
  readonly pollInterval?: Duration;
  /**
   * Polls before the stage gives up (the deployment itself goes on, and rolls back on its alarms).
   *
   * @default 180 (90 minutes at the default interval; `DEPLOY_WAIT`)
   */
  readonly maxPolls?: number;
}

/**
 * The pipeline's Deploy stage for a {@link VllmEndpoint}, plugged in through
 * `FineTuningPipelineProps.deployStage`. It runs after Register when the run asks for a
 * deployment (`deploy: { endpointName, adapterName }` in the RunRequest; off by default) and
 * only for an approved model (`autoApprove`).
 *
 * - Inference-component endpoints: the run's adapter becomes (or replaces) the adapter component
 *   `adapterName` on the base component (CreateInferenceComponent / UpdateInferenceComponent),
 *   and the stage polls DescribeInferenceComponent until `InService`.
 * - Single-model endpoints: CreateModel from the run's merged model folder, CreateEndpointConfig
 *   with the endpoint's variant, UpdateEndpoint with its blue/green or rolling DeploymentConfig
 *   and auto-rollback alarms, then DescribeEndpoint until `InService`. An endpoint back in
 *   service on its previous configuration was rolled back by SageMaker: the rollback stands and
 *   the run fails (`DeployRolledBack`), notified; `Failed`, `UpdateRollbackFailed` and
 *   `OutOfService` fail it too (`DeployFailed`).
 *
 * The poll loop is bounded (`maxPolls`); giving up fails the run (`DeployTimedOut`) but does not
 * stop the deployment, which SageMaker finishes or rolls back on its own.
 */
export class VllmDeployStage implements IPipelineStage {
  constructor(private readonly props: VllmDeployStageProps) {}

  /** An inference-component endpoint takes the run's adapter; a single-model endpoint its full weights. */
  public get deploys(): DeployArtifact {
    return this.props.endpoint.usesInferenceComponents ? 'adapter' : 'full-weights';
  }

  public bind(scope: Construct, context: PipelineStageContext): sfn.IChainable {
    const ep = this.props.endpoint;
    this.grantEndpointReadArtifacts(context);
    // One notify-and-fail chain per Fail state, shared by every path that ends there.
    const failures = new Map<string, sfn.IChainable>();
    const fail = (name: string) => {
      if (!failures.has(name)) failures.set(name, context.failure(name, 'Deploy'));
      return failures.get(name)!;
    };
    const raise = (id: string, error: string, cause: string, failName: string) =>
      new sfn.Pass(scope, id, { parameters: { Error: error, 'Cause.$': cause }, resultPath: '$.error' }).next(fail(failName));

    const deployed = new sfn.Pass(scope, DEPLOY_STATES.deployed, {
      parameters: { 'endpointName.$': '$.plan.deploy.endpointName', 'adapterName.$': '$.plan.deploy.adapterName', 'status.$': '$.deployment.describe.status' },
      resultPath: '$.deployment.result',
    });

    // Polling: Wait → Describe → Status (Choice) → CountPoll → Wait, at most maxPolls times.
    const maxPolls = this.props.maxPolls ?? DEPLOY_WAIT.maxPolls;
    const startPolling = new sfn.Pass(scope, DEPLOY_STATES.startPolling, { result: sfn.Result.fromObject({ count: 0 }), resultPath: '$.deployment.polls' });
    const wait = new sfn.Wait(scope, DEPLOY_STATES.wait, { time: sfn.WaitTime.duration(this.props.pollInterval ?? Duration.seconds(DEPLOY_WAIT.pollSeconds)) });
    const countPoll = new sfn.Pass(scope, DEPLOY_STATES.countPoll, {
      parameters: { 'count.$': 'States.MathAdd($.deployment.polls.count, 1)' },
      resultPath: '$.deployment.polls',
    });
    const timedOut = raise('DeployGiveUp', 'Tuneyard.DeployTimedOut', `States.Format('Not InService after ${maxPolls} polls; last status {}. SageMaker finishes or rolls back the deployment on its own.', $.deployment.describe.status)`, DEPLOY_FAILURES.timedOut);
    const keepPolling = (choice: sfn.Choice) =>
      choice.when(sfn.Condition.numberLessThan('$.deployment.polls.count', maxPolls), countPoll).otherwise(timedOut);

    let start: sfn.IChainable;
    let status: sfn.Choice;
    if (ep.usesInferenceComponents) {
      const adapterArtifact = this.props.adapterArtifact ?? MODEL_OUTPUT.adapterArchive;
      const specification = {
        BaseInferenceComponentName: ep.baseComponentName,
        Container: { 'ArtifactUrl.$': `States.Format('{}${adapterArtifact}', $.plan.modelArtifactS3Uri)` },
      };
      const componentArn = Stack.of(scope).formatArn({ service: 'sagemaker', resource: 'inference-component', resourceName: '*' });
      const find = new tasks.CallAwsService(scope, DEPLOY_STATES.findAdapter, {
        service: 'sagemaker',
        action: 'describeInferenceComponent',
        iamAction: 'sagemaker:DescribeInferenceComponent',
        parameters: { 'InferenceComponentName.$': '$.plan.deploy.adapterName' },
        iamResources: [componentArn],
        resultSelector: { 'InferenceComponentName.$': '$.InferenceComponentName' },
        resultPath: '$.deployment.existing',
      });
      const create = new tasks.CallAwsService(scope, DEPLOY_STATES.createAdapter, {
        service: 'sagemaker',
        action: 'createInferenceComponent',
        iamAction: 'sagemaker:CreateInferenceComponent',
        parameters: { 'InferenceComponentName.$': '$.plan.deploy.adapterName', EndpointName: ep.endpointName, Specification: specification },
        iamResources: [componentArn, ep.endpointArn],
        resultPath: sfn.JsonPath.DISCARD,
      });
      const update = new tasks.CallAwsService(scope, DEPLOY_STATES.updateAdapter, {
        service: 'sagemaker',
        action: 'updateInferenceComponent',
        iamAction: 'sagemaker:UpdateInferenceComponent',
        parameters: { 'InferenceComponentName.$': '$.plan.deploy.adapterName', Specification: specification },
        iamResources: [componentArn],
        resultPath: sfn.JsonPath.DISCARD,
      });
      const describe = new tasks.CallAwsService(scope, DEPLOY_STATES.describe, {
        service: 'sagemaker',
        action: 'describeInferenceComponent',
        iamAction: 'sagemaker:DescribeInferenceComponent',
        parameters: { 'InferenceComponentName.$': '$.plan.deploy.adapterName' },
        iamResources: [componentArn],
        resultSelector: { 'status.$': '$.InferenceComponentStatus' },
        resultPath: '$.deployment.describe',
      });
      for (const task of [find, create, update, describe]) context.addTransientRetries(task, 'sagemaker');
      acknowledgeOnGrantee(context.role, {
        [`AwsSolutions-IAM5[Resource::${nagResource(Stack.of(scope), componentArn)}]`]:
          'The adapter component is named by each run request (deploy.adapterName), so its name is not known at synth; the actions are limited to creating, updating and describing inference components.',
      });
      // An adapter that does not exist yet is created; any other describe error leads there too,
      // and CreateInferenceComponent then fails on its own (an existing name is refused).
      find.addCatch(create, { resultPath: '$.deployment.findError' });
      for (const task of [create, update, describe]) task.addCatch(fail(DEPLOY_FAILURES.failed), { resultPath: '$.error' });
      find.next(update);
      status = new sfn.Choice(scope, DEPLOY_STATES.status)
        .when(sfn.Condition.stringEquals('$.deployment.describe.status', 'InService'), deployed)
        .when(
          sfn.Condition.stringEquals('$.deployment.describe.status', 'Failed'),
          raise('DeployComponentFailed', 'Tuneyard.DeployFailed', "States.Format('Adapter component {} is Failed.', $.plan.deploy.adapterName)", DEPLOY_FAILURES.failed),
        );
      keepPolling(status);
      create.next(startPolling);
      update.next(startPolling);
      describe.next(status);
      wait.next(describe);
      start = find;
    } else {
      const mergedFolder = this.props.mergedModelFolder ?? MODEL_OUTPUT.fullWeights;
      const newName = "States.Format('tuneyard-{}', States.Hash($.plan.runId, 'MD5'))";
      const stack = Stack.of(scope);
      const createModel = new tasks.CallAwsService(scope, DEPLOY_STATES.createModel, {
        service: 'sagemaker',
        action: 'createModel',
        iamAction: 'sagemaker:CreateModel',
        parameters: {
          'ModelName.$': newName,
          ExecutionRoleArn: ep.role.roleArn,
          EnableNetworkIsolation: true,
          PrimaryContainer: {
            Image: ep.imageUri,
            Environment: ep.environment,
            ModelDataSource: {
              S3DataSource: { 'S3Uri.$': `States.Format('{}${mergedFolder}', $.plan.modelArtifactS3Uri)`, S3DataType: 'S3Prefix', CompressionType: 'None' },
            },
          },
          ...(ep.modelVpcConfig ? { VpcConfig: { Subnets: ep.modelVpcConfig.subnets, SecurityGroupIds: ep.modelVpcConfig.securityGroupIds } } : {}),
        },
        iamResources: [stack.formatArn({ service: 'sagemaker', resource: 'model', resourceName: 'tuneyard-*' })],
        resultPath: sfn.JsonPath.DISCARD,
      });
      const { ModelName: _previousModel, ...variant } = toApi(ep.productionVariant) as Record<string, unknown>;
      void _previousModel;
      const createConfig = new tasks.CallAwsService(scope, DEPLOY_STATES.createEndpointConfig, {
        service: 'sagemaker',
        action: 'createEndpointConfig',
        iamAction: 'sagemaker:CreateEndpointConfig',
        parameters: {
          'EndpointConfigName.$': newName,
          ProductionVariants: [{ ...variant, 'ModelName.$': newName }],
          ...(ep.encryptionKey ? { KmsKeyId: ep.encryptionKey.keyArn } : {}),
        },
        iamResources: [stack.formatArn({ service: 'sagemaker', resource: 'endpoint-config', resourceName: 'tuneyard-*' })],
        resultPath: sfn.JsonPath.DISCARD,
      });
      const update = new tasks.CallAwsService(scope, DEPLOY_STATES.updateEndpoint, {
        service: 'sagemaker',
        action: 'updateEndpoint',
        iamAction: 'sagemaker:UpdateEndpoint',
        parameters: { EndpointName: ep.endpointName, 'EndpointConfigName.$': newName, DeploymentConfig: ep.apiDeploymentConfig },
        iamResources: [ep.endpointArn, stack.formatArn({ service: 'sagemaker', resource: 'endpoint-config', resourceName: 'tuneyard-*' })],
        resultPath: sfn.JsonPath.DISCARD,
      });
      const describe = new tasks.CallAwsService(scope, DEPLOY_STATES.describe, {
        service: 'sagemaker',
        action: 'describeEndpoint',
        iamAction: 'sagemaker:DescribeEndpoint',
        parameters: { EndpointName: ep.endpointName },
        iamResources: [ep.endpointArn],
        resultSelector: { 'status.$': '$.EndpointStatus', 'config.$': '$.EndpointConfigName'},
        resultPath: '$.deployment.describe',
      });
      for (const task of [createModel, createConfig, update, describe]) {
        context.addTransientRetries(task, 'sagemaker');
        task.addCatch(fail(DEPLOY_FAILURES.failed), { resultPath: '$.error' });
      }
      const expected = new sfn.Pass(scope, 'DeployExpectConfig', { parameters: { 'name.$': newName }, resultPath: '$.deployment.config' });
      status = new sfn.Choice(scope, DEPLOY_STATES.status)
        .when(
          sfn.Condition.and(
            sfn.Condition.stringEquals('$.deployment.describe.status', 'InService'),
            sfn.Condition.stringEqualsJsonPath('$.deployment.describe.config', '$.deployment.config.name'),
          ),
          deployed,
        )
        .when(
          sfn.Condition.stringEquals('$.deployment.describe.status', 'InService'),
          raise(
            'DeployWasRolledBack',
            'Tuneyard.DeployRolledBack',
            "States.Format('SageMaker rolled {} back to {} (an auto-rollback alarm fired or the new fleet failed); the rollback stands.', $.plan.deploy.endpointName, $.deployment.describe.config)",
            DEPLOY_FAILURES.rolledBack,
          ),
        )
        .when(
          sfn.Condition.or(
            sfn.Condition.stringEquals('$.deployment.describe.status', 'Failed'),
            sfn.Condition.stringEquals('$.deployment.describe.status', 'UpdateRollbackFailed'),
            sfn.Condition.stringEquals('$.deployment.describe.status', 'OutOfService'),
          ),
          raise('DeployEndpointFailed', 'Tuneyard.DeployFailed', "States.Format('Endpoint {} is {}.', $.plan.deploy.endpointName, $.deployment.describe.status)", DEPLOY_FAILURES.failed),
        );
      keepPolling(status);
      createModel.next(createConfig).next(update).next(expected).next(startPolling);
      describe.next(status);
      wait.next(describe);
      start = createModel;
      const created = ['model', 'endpoint-config'].map((resource) => stack.formatArn({ service: 'sagemaker', resource, resourceName: 'tuneyard-*' }));
      acknowledgeOnGrantee(
        context.role,
        Object.fromEntries(
          created.map((arn) => [
            `AwsSolutions-IAM5[Resource::${nagResource(stack, arn)}]`,
            'Each run creates its own model and endpoint config, named tuneyard-<hash of the run id> at run time; the grant covers only names with that prefix.',
          ]),
        ),
      );
      // UpdateEndpoint passes the execution role to the new model's endpoint config and checks the rollback alarms.
      context.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['iam:PassRole'], resources: [ep.role.roleArn] }));
      context.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['cloudwatch:DescribeAlarms'], resources: [ep.invocation5xxAlarm.alarmArn, ep.modelLatencyAlarm.alarmArn] }),
      );
    }
    startPolling.next(wait);
    countPoll.next(wait);

    const approved = new sfn.Choice(scope, DEPLOY_STATES.checkApproval)
      .when(sfn.Condition.stringEquals('$.plan.modelApprovalStatus', 'Approved'), start)
      .otherwise(
        raise(
          'DeployRefuseUnapproved',
          'Tuneyard.DeployNotApproved',
          "States.Format('Run {} registered its model as {}; only approved models are deployed (set autoApprove, or approve the package and deploy it).', $.plan.runId, $.plan.modelApprovalStatus)",
          DEPLOY_FAILURES.notApproved,
        ),
      );
    const target = new sfn.Choice(scope, DEPLOY_STATES.checkTarget)
      .when(sfn.Condition.stringEquals('$.plan.deploy.endpointName', ep.endpointName), approved)
      .otherwise(
        raise(
          'DeployRefuseTarget',
          'Tuneyard.DeployTargetUnknown',
          `States.Format('The run asked to deploy to {}; this pipeline deploys to ${ep.endpointName}.', $.plan.deploy.endpointName)`,
          DEPLOY_FAILURES.targetUnknown,
        ),
      );
    return sfn.Chain.custom(target, [deployed], deployed);
  }

  /**
   * SageMaker loads the run's adapter (`ArtifactUrl`) or merged model (`ModelDataSource`) with
   * the endpoint's execution role, which by itself may read only the endpoint's base model: give
   * it read access to the runs' outputs under `artifacts/`.
   */
  private grantEndpointReadArtifacts(context: PipelineStageContext): void {
    const role = this.props.endpoint.role;
    context.store.grantReadArtifacts(role);
    const stack = Stack.of(this.props.endpoint);
    acknowledgeOnGrantee(role, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, context.store.bucket.arnForObjects(`${DATA_PREFIXES.artifacts}*`))}]`]:
        'The Deploy stage serves the adapter or merged model of each run from artifacts/<run id>/, named at run time; read-only.',
    });
  }
}

/** camelCase L1 property shape → the API's PascalCase. */
function toApi(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toApi);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k.charAt(0).toUpperCase() + k.slice(1), toApi(v)]));
  }
  return value;
}
