import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DatasetStore } from '../constructs/dataset-store';
import { DatasetValidationFunction } from '../constructs/dataset-validator';
import { FineTuningPipeline } from '../constructs/fine-tuning-pipeline';
import { NotificationTopic } from '../constructs/notification-topic';
import { VllmDeployStage, VllmEndpoint, VllmImage, VllmModelData } from '../constructs/vllm-endpoint';
import { PlaneAlarms } from '../constructs/plane-alarms';
import { PlaneDashboard } from '../constructs/plane-dashboard';
import { FineTuningJob } from '../constructs/fine-tuning-job';
import { ModelRegistry } from '../constructs/model-registry';
import { PlaneNetwork } from '../constructs/plane-network';
import { TrainingImage } from '../constructs/training-image';
import { UsageMetrics } from '../constructs/usage-metrics';
import { PlaneConfig, parsePlaneConfig } from './config';

/** Properties of a {@link FineTuningPlaneStack}. */
export interface FineTuningPlaneStackProps extends StackProps {
  /**
   * The plane's configuration (the same JSON that `cdk.json` context or a config file carries).
   * It is validated here too, so a wrong value fails synth with the field, the value and the fix.
   *
   * @default - every default of the constructs
   */
  readonly config?: PlaneConfig;
}

/**
 * The whole fine-tuning plane in one stack: it composes Tuneyard's constructs and holds no
 * resource logic of its own.
 */
export class FineTuningPlaneStack extends Stack {
  /** Datasets, artifacts, checkpoints and eval reports. */
  public readonly dataStore: DatasetStore;
  /** The plane's CloudWatch dashboard (absent when `observability.enabled` is false). */
  public readonly dashboard?: PlaneDashboard;
  /**
   * Publishes training instance-hours and the endpoint's instances and copies (absent when
   * `observability.enabled` or `observability.usageMetrics` is false).
   */
  public readonly usage?: UsageMetrics;
  /** The plane's alarms, notifying the topic (absent when `observability.enabled` is false). */
  public readonly alarms?: PlaneAlarms;
  /** The VPC of the jobs and endpoints. */
  public readonly network: PlaneNetwork;
  /** The trainer image. */
  public readonly trainingImage: TrainingImage;
  /** The training and evaluation jobs (role, security group, Step Functions states). */
  public readonly trainingJob: FineTuningJob;
  /** The model package group of the tuned models. */
  public readonly modelRegistry: ModelRegistry;
  /** The encrypted, TLS-only topic that receives run outcomes and alarms. */
  public readonly notifications: NotificationTopic;
  /** The Lambda function that validates a dataset version before training. */
  public readonly datasetValidator: DatasetValidationFunction;
  /** The vLLM endpoint (only when `serving` is configured). */
  public readonly endpoint?: VllmEndpoint;
  /** The Step Functions pipeline: validate, train, evaluate, gate, register, deploy, notify. */
  public readonly pipeline: FineTuningPipeline;

  constructor(scope: Construct, id: string, props: FineTuningPlaneStackProps = {}) {
    super(scope, id, { description: 'Tuneyard: a fine-tuning plane for LLMs', ...props });
    const config = parsePlaneConfig(props.config ?? {}, `${id} config`);
    const removalPolicy = config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    const data = config.dataStore ?? {};
    const encryptionKey = data.existingKeyArn ? kms.Key.fromKeyArn(this, 'DataKey', data.existingKeyArn) : undefined;
    this.dataStore = new DatasetStore(this, 'DataStore', {
      bucket: data.existingBucketName
        ? s3.Bucket.fromBucketAttributes(this, 'DataBucket', { bucketName: data.existingBucketName, encryptionKey })
        : undefined,
      encryptionKey,
      noncurrentVersionExpiration: optionalDays(data.noncurrentVersionExpirationDays),
      checkpointExpiration: optionalDays(data.checkpointExpirationDays),
      accessLogsRetention: optionalDays(data.accessLogsRetentionDays),
      datasetAdminRole: data.datasetAdminRoleArn
        ? iam.Role.fromRoleArn(this, 'DatasetAdminRole', data.datasetAdminRoleArn, { mutable: false })
        : undefined,
      removalPolicy,
    });

    const net = config.network ?? {};
    this.network = new PlaneNetwork(this, 'Network', {
      vpc: net.vpcId
        ? ec2.Vpc.fromVpcAttributes(this, 'ImportedVpc', {
            vpcId: net.vpcId,
            availabilityZones: net.availabilityZones ?? [],
            privateSubnetIds: net.subnetIds,
            vpcCidrBlock: net.vpcCidrBlock,
          })
        : undefined,
      cidr: net.vpcId ? undefined : net.vpcCidrBlock,
      availabilityZones: net.vpcId ? undefined : net.availabilityZones,
      s3PrefixListId: net.s3PrefixListId,
      removalPolicy,
    });
    const training = config.training ?? {};
    this.trainingImage = training.imageUri ? TrainingImage.fromImageUri(training.imageUri) : TrainingImage.fromBundled(this, 'TrainerImage');
    this.trainingJob = new FineTuningJob(this, 'TrainingJob', {
      store: this.dataStore,
      image: this.trainingImage,
      vpc: this.network.vpc,
      vpcSubnets: this.network.vpcSubnets,
      s3PrefixListId: this.network.s3PrefixListId,
      jobNamePrefix: training.jobNamePrefix,
      allowHubModels: training.allowHubModels,
    });
    // Registered models name the vLLM image that serves them.
    const servingImage = VllmImage.dlc();
    this.modelRegistry = new ModelRegistry(this, 'ModelRegistry', { inferenceImageUri: servingImage.bind(this).imageUri, removalPolicy });
    this.notifications = new NotificationTopic(this, 'Notifications', { removalPolicy });
    const reserveConcurrency = config.reserveLambdaConcurrency;
    this.datasetValidator = new DatasetValidationFunction(this, 'DatasetValidator', {
      store: this.dataStore,
      reserveConcurrency,
      vpc: this.network.vpc,
      vpcSubnets: this.network.vpcSubnets,
      removalPolicy,
    });

    const serving = config.serving;
    if (serving) {
      this.endpoint = new VllmEndpoint(this, 'Endpoint', {
        instanceType: serving.instanceType,
        baseModel: serving.baseModel,
        parametersBillions: serving.parametersBillions,
        modelData: VllmModelData.fromS3Prefix(this.dataStore.bucket, serving.modelPrefix),
        image: servingImage,
        endpointName: serving.endpointName,
        inferenceComponents: serving.adapters ? { minCopies: serving.adapters.minCopies, maxCopies: serving.adapters.maxCopies } : undefined,
        vllm: serving.adapters ? { enableLora: true } : undefined,
        vpc: this.network.vpc,
        vpcSubnets: this.network.vpcSubnets,
        s3PrefixListId: this.network.s3PrefixListId,
      });
    }

    this.pipeline = new FineTuningPipeline(this, 'Pipeline', {
      store: this.dataStore,
      trainingJob: this.trainingJob,
      registry: this.modelRegistry,
      datasetValidator: this.datasetValidator,
      topic: this.notifications.topic,
      deployStage: this.endpoint ? new VllmDeployStage({ endpoint: this.endpoint }) : undefined,
      timeout: config.pipeline?.timeoutDays === undefined ? undefined : Duration.days(config.pipeline.timeoutDays),
      judgeModelIds: config.pipeline?.judgeModelIds,
      reserveConcurrency,
      vpc: this.network.vpc,
      vpcSubnets: this.network.vpcSubnets,
      removalPolicy,
    });
    // The judge's function runs in the plane's isolated subnets: it reaches Bedrock Runtime through an endpoint.
    if (config.pipeline?.judgeModelIds?.length) this.network.addServiceEndpoint('BedrockRuntime', ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME);

    const observability = config.observability ?? {};
    if (observability.enabled ?? true) {
      if (observability.usageMetrics ?? true) {
        this.usage = new UsageMetrics(this, 'Usage', {
          trainingJobs: [this.trainingJob],
          endpoints: this.endpoint ? [this.endpoint] : [],
          dataStore: this.dataStore,
          vpc: this.network.vpc,
          vpcSubnets: this.network.vpcSubnets,
          logEncryptionKey: this.pipeline.logEncryptionKey,
          reserveConcurrency,
          removalPolicy,
        });
      }
      this.alarms = new PlaneAlarms(this, 'Alarms', {
        topic: this.notifications.topic,
        pipelines: [this.pipeline],
        endpoints: this.endpoint ? [this.endpoint] : [],
        runbookUrl: observability.runbookUrl,
      });
      this.dashboard = new PlaneDashboard(this, 'Dashboard', {
        dataStore: this.dataStore,
        trainingJobs: [this.trainingJob],
        pipelines: [this.pipeline],
        endpoints: this.endpoint ? [this.endpoint] : undefined,
        usage: this.usage,
        alarms: this.alarms.alarms,
        runbookUrl: observability.runbookUrl,
      });
    }

    // What the `tuneyard` CLI reads to find the plane.
    new CfnOutput(this, 'StateMachineArn', { value: this.pipeline.stateMachine.stateMachineArn, description: 'The fine-tuning pipeline' });
    new CfnOutput(this, 'DataBucketName', { value: this.dataStore.bucket.bucketName, description: 'Datasets, artifacts, checkpoints, eval reports' });
    new CfnOutput(this, 'NotificationTopicArn', { value: this.notifications.topic.topicArn, description: 'Run outcomes and alarms' });
    new CfnOutput(this, 'ModelPackageGroupName', { value: this.modelRegistry.modelPackageGroupName, description: 'The model registry' });
    new CfnOutput(this, 'TrainingJobPrefix', { value: this.trainingJob.jobNamePrefix, description: 'Prefix of the training job names' });
    // The PlanRun settings `tuneyard train` checks a request against before it starts a run.
    new CfnOutput(this, 'AllowHubModels', { value: String(this.trainingJob.allowHubModels), description: 'Whether a Hugging Face Hub id may be the base model' });
    if (this.trainingJob.minComputeCapability !== undefined) {
      new CfnOutput(this, 'MinComputeCapability', { value: String(this.trainingJob.minComputeCapability), description: 'The lowest GPU compute capability the training image runs on' });
    }
    if (this.endpoint) new CfnOutput(this, 'EndpointName', { value: this.endpoint.endpointName, description: 'The vLLM endpoint' });
  }
}

function optionalDays(days: number | undefined): Duration | undefined {
  return days === undefined ? undefined : Duration.days(days);
}
