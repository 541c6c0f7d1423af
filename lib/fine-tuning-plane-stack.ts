import { Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { DatasetStore } from '../constructs/dataset-store';
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
  }
}

function optionalDays(days: number | undefined): Duration | undefined {
  return days === undefined ? undefined : Duration.days(days);
}
