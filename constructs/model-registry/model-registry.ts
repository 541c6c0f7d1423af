import { Names, RemovalPolicy, Stack, Tags, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { acknowledgeOnGrantee, nagResource } from '../../lib/nag';
import { VllmImage } from '../vllm-endpoint/image';

/** Properties of a {@link ModelRegistry}. */
export interface ModelRegistryProps {
  /**
   * The model package group's name (lower-case letters, digits and hyphens, up to 63).
   *
   * @default - a name unique to this construct, derived from its path
   */
  readonly modelPackageGroupName?: string;
  /**
   * The group's description.
   *
   * @default 'Models fine-tuned by Tuneyard, with their lineage and eval reports'
   */
  readonly description?: string;
  /**
   * The serving image that registered model packages name (the vLLM image of the endpoints).
   *
   * @default - the vLLM SageMaker DLC that `VllmEndpoint` serves with by default
   * (`VllmImage.dlc()`, tag `DEFAULT_VLLM_DLC_TAG`) in the stack's region
   */
  readonly inferenceImageUri?: string;
  /**
   * What happens to the model package group when it leaves the stack. CloudFormation cannot delete
   * a group that still holds versions, and the versions are the record of every released model.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** Options of the Register state. */
export interface RegisterStateOptions {
  /**
   * The serving image URI written into the model package's InferenceSpecification.
   *
   * @default - the registry's `inferenceImageUri` (the vLLM DLC by default)
   */
  readonly inferenceImageUri?: string;
  /** Where the CreateModelPackage result (`ModelPackageArn`) goes. @default '$.registration' */
  readonly resultPath?: string;
}

/**
 * The metadata keys a registered model package carries (CustomerMetadataProperties). CreateModelPackage
 * takes at most 50 of them; keys of 1-128 and values of 1-256 characters, both only letters, digits,
 * spaces and `_ . : / = + - @` (planRun refuses a run whose values would break that). The recipe
 * goes into the ModelPackageDescription, as `lineageRecipe` writes it (`name=value` pairs). `kind` says what the model
 * is: `reward` for a reward model (recipe method `reward`: a sequence-classification model with one score, which RL
 * runs name as their reward), `generative` for every other method. `rewardModel` says what an RL run (method grpo or
 * rloo) was rewarded by: the model package ARN or s3:// model folder its request named, `none` for every other run.
 */
export const LINEAGE_KEYS = [
  'runId',
  'baseModel',
  'datasetName',
  'datasetSha256',
  'method',
  'kind',
  'rewardModel',
  'trainingJobName',
  'evalLossRatio',
  'forgettingIncrease',
  'evalReport',
] as const;

/** The Register state's TimeoutSeconds: CreateModelPackage answers in seconds. */
export const REGISTER_STATE_TIMEOUT_SECONDS = 300;

/**
 * A SageMaker model package group: every tuned model that passes the gate is registered here as
 * a model package version, with its lineage (base model, dataset version, recipe, training job,
 * eval figures) and its eval report as model-quality statistics.
 */
export class ModelRegistry extends Construct {
  /** The model package group. */
  public readonly modelPackageGroup: sagemaker.CfnModelPackageGroup;
  /** The model package group's name. */
  public readonly modelPackageGroupName: string;
  /** The model package group's ARN. */
  public readonly modelPackageGroupArn: string;
  private readonly inferenceImageUri?: string;
  private readonly groupName: string;

  constructor(scope: Construct, id: string, props: ModelRegistryProps = {}) {
    super(scope, id);
    const name = props.modelPackageGroupName ?? Names.uniqueResourceName(this, { maxLength: 63, separator: '-' }).toLowerCase();
    if (!Token.isUnresolved(name) && !/^[a-z0-9](-*[a-z0-9]){0,62}$/.test(name)) {
      throw new TuneyardValidationError(
        `modelPackageGroupName "${name}" is invalid: use 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit (e.g. "tuneyard-models").`,
        this,
      );
    }
    this.modelPackageGroup = new sagemaker.CfnModelPackageGroup(this, 'Resource', {
      modelPackageGroupName: name,
      modelPackageGroupDescription: props.description ?? 'Models fine-tuned by Tuneyard, with their lineage and eval reports',
    });
    Tags.of(this.modelPackageGroup).add('tuneyard:component', 'model-registry');
    this.modelPackageGroup.applyRemovalPolicy(props.removalPolicy ?? RemovalPolicy.RETAIN);
    this.modelPackageGroupName = name;
    this.modelPackageGroupArn = this.modelPackageGroup.attrModelPackageGroupArn;
    this.groupName = name;
    this.inferenceImageUri = props.inferenceImageUri;
  }

  /**
   * The Register state: `aws-sdk:sagemaker:createModelPackage` for the run's tuned model.
   *
   * - Approval: `$.plan.modelApprovalStatus` (`Approved` when the request set `autoApprove`,
   *   else `PendingManualApproval`; computed by `planRun`).
   * - Model data: the uncompressed training output `$.plan.modelArtifactS3Uri` (S3Prefix, no compression).
   * - Lineage (CustomerMetadataProperties, {@link LINEAGE_KEYS}): from `$.plan.lineage` (runId,
   *   baseModel, datasetName, datasetSha256, method, kind: `reward` or `generative`, rewardModel: what an RL run was
   *   rewarded by or `none`), `$.training.TrainingJobName`,
   *   `$.report.evalLossRatio` and `$.report.forgettingIncrease` (numbers, or null without a
   *   probe), and the report's URI.
   * - Description: `Tuneyard run <runId>; recipe <$.plan.lineage.recipe>` (the recipe's
   *   `name=value` pairs, at most 256 characters; descriptions take up to 1024).
   * - ModelMetrics.ModelQuality.Statistics: the eval report `$.plan.evalReport.s3Uri`.
   */
  public registerState(id: string, options: RegisterStateOptions = {}): sfn.CustomState {
    // Bound here, not in the constructor: a registry that never registers needs no DLC in its region.
    const image = options.inferenceImageUri ?? this.inferenceImageUri ?? VllmImage.dlc().bind(this).imageUri;
    return new sfn.CustomState(this, id, {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${Stack.of(this).partition}:states:::aws-sdk:sagemaker:createModelPackage`,
        TimeoutSeconds: REGISTER_STATE_TIMEOUT_SECONDS,
        Parameters: {
          ModelPackageGroupName: this.modelPackageGroupName,
          // Idempotent per run: a retried CreateModelPackage (throttled, or its answer lost) returns the
          // version the first call registered instead of registering a second one.
          'ClientToken.$': "States.Hash($.plan.runId, 'MD5')",
          'ModelPackageDescription.$': "States.Format('Tuneyard run {}; recipe {}', $.plan.runId, $.plan.lineage.recipe)",
          'ModelApprovalStatus.$': '$.plan.modelApprovalStatus',
          InferenceSpecification: {
            Containers: [
              {
                Image: image,
                ModelDataSource: {
                  S3DataSource: { 'S3Uri.$': '$.plan.modelArtifactS3Uri', S3DataType: 'S3Prefix', CompressionType: 'None' },
                },
              },
            ],
            SupportedContentTypes: ['application/json'],
            SupportedResponseMIMETypes: ['application/json'],
          },
          CustomerMetadataProperties: {
            'runId.$': '$.plan.lineage.runId',
            'baseModel.$': '$.plan.lineage.baseModel',
            'datasetName.$': '$.plan.lineage.datasetName',
            'datasetSha256.$': '$.plan.lineage.datasetSha256',
            'method.$': '$.plan.lineage.method',
            'kind.$': '$.plan.lineage.kind',
            'rewardModel.$': '$.plan.lineage.rewardModel',
            'trainingJobName.$': '$.training.TrainingJobName',
            'evalLossRatio.$': "States.Format('{}', $.report.evalLossRatio)",
            'forgettingIncrease.$': "States.Format('{}', $.report.forgettingIncrease)",
            'evalReport.$': '$.plan.evalReport.s3Uri',
          },
          ModelMetrics: {
            ModelQuality: { Statistics: { ContentType: 'application/json', 'S3Uri.$': '$.plan.evalReport.s3Uri' } },
          },
        },
        ResultSelector: { 'ModelPackageArn.$': '$.ModelPackageArn' },
        ResultPath: options.resultPath ?? '$.registration',
      },
    });
  }

  /** Lets a role (the pipeline's) register model package versions in this group. */
  public grantRegister(grantee: iam.IGrantable): iam.Grant {
    const stack = Stack.of(this);
    const versions = stack.formatArn({ service: 'sagemaker', resource: 'model-package', resourceName: `${this.groupName}/*` });
    const grant = iam.Grant.addToPrincipal({
      grantee,
      actions: ['sagemaker:CreateModelPackage', 'sagemaker:DescribeModelPackageGroup'],
      resourceArns: [this.modelPackageGroupArn, versions],
    });
    acknowledgeOnGrantee(grantee, {
      [`AwsSolutions-IAM5[Resource::${nagResource(stack, versions)}]`]:
        'Model package versions are numbered by SageMaker at registration; the grant is limited to the versions of this group.',
    });
    return grant;
  }
}
