import { Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DatasetStore } from '../constructs/dataset-store';
import { PlaneDashboard } from '../constructs/plane-dashboard';
import { FineTuningJob } from '../constructs/fine-tuning-job';
import { ModelRegistry } from '../constructs/model-registry';
import { PlaneNetwork } from '../constructs/plane-network';
import { TrainingImage } from '../constructs/training-image';
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
  /** The VPC of the jobs and endpoints. */
  public readonly network: PlaneNetwork;
  /** The trainer image. */
  public readonly trainingImage: TrainingImage;
  /** The training and evaluation jobs (role, security group, Step Functions states). */
  public readonly trainingJob: FineTuningJob;
  /** The model package group of the tuned models. */
  public readonly modelRegistry: ModelRegistry;

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
    this.modelRegistry = new ModelRegistry(this, 'ModelRegistry');
    const observability = config.observability ?? {};
    if (observability.enabled ?? true) {
      this.dashboard = new PlaneDashboard(this, 'Dashboard', {
        dataStore: this.dataStore,
        trainingJob: this.trainingJob,
        runbookUrl: observability.runbookUrl,
      });
    }
  }
}

function optionalDays(days: number | undefined): Duration | undefined {
  return days === undefined ? undefined : Duration.days(days);
}
