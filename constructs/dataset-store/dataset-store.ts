import { Annotations, Duration, RemovalPolicy, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { DATA_PREFIXES } from '../../lib/layout';
import { inControlPacks } from '../../lib/nag';

/** Properties of a {@link DatasetStore}. */
export interface DatasetStoreProps {
  /**
   * An existing data bucket to use instead of creating one.
   *
   * Tuneyard then manages none of the bucket's settings (encryption, versioning, lifecycle,
   * logging, the write-once policy on `datasets/`): the owner of the bucket keeps them.
   * Pass `encryptionKey` too when the bucket is encrypted with a customer-managed KMS key, so
   * grants include the key.
   *
   * @default - a new bucket with the secure defaults described on {@link DatasetStore}
   */
  readonly bucket?: s3.IBucket;

  /**
   * The KMS key that encrypts the data bucket (and that training jobs use for their outputs).
   *
   * @default - a new customer-managed key with yearly automatic rotation, retained on stack deletion
   */
  readonly encryptionKey?: kms.IKey;

  /**
   * How long a noncurrent (overwritten or deleted) object version is kept under `artifacts/`,
   * `checkpoints/` and `eval-reports/`. Dataset versions are write-once and never expire.
   *
   * @default Duration.days(30)
   */
  readonly noncurrentVersionExpiration?: Duration;

  /**
   * How long spot-training checkpoints under `checkpoints/` are kept after they are written.
   *
   * @default Duration.days(14)
   */
  readonly checkpointExpiration?: Duration;

  /**
   * Where S3 server access logs of the data bucket go.
   *
   * @default - a new log bucket (SSE-S3, which is the only encryption S3 log delivery supports),
   * versioned, TLS-only, retained on stack deletion, logs expiring after `accessLogsRetention`
   */
  readonly accessLogsBucket?: s3.IBucket;

  /**
   * How long server access logs are kept in the log bucket that this construct creates.
   * Ignored when `accessLogsBucket` is given.
   *
   * @default Duration.days(365)
   */
  readonly accessLogsRetention?: Duration;

  /**
   * The only principal allowed to overwrite or delete objects under `datasets/` (for example to
   * erase a dataset on a data-subject request).
   *
   * @default - nobody: dataset versions can only be created, never overwritten or deleted
   * (changing that needs a stack update that removes the statement)
   */
  readonly datasetAdminRole?: iam.IRole;

  /**
   * What happens to the key, the data bucket and the log bucket when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The plane's data: datasets, training artifacts, checkpoints and eval reports in one
 * KMS-encrypted, versioned bucket, under the prefixes of `DATA_PREFIXES`.
 *
 * Defaults: a customer-managed KMS key with rotation; block public access; TLS-only; ACLs
 * disabled; versioning; server access logs to a separate bucket; retained on stack deletion;
 * lifecycle rules for noncurrent versions, checkpoints and incomplete multipart uploads.
 *
 * Dataset versions under `datasets/<name>/<sha256>/` are immutable: the bucket policy denies
 * every `PutObject`/`CompleteMultipartUpload` there that lacks `If-None-Match: *` (so an existing
 * key can never be overwritten) and every delete, to all principals but `datasetAdminRole`.
 * Versioning keeps the prior version if an admin does overwrite one.
 */
export class DatasetStore extends Construct {
  /** The data bucket. */
  public readonly bucket: s3.IBucket;
  /** The key that encrypts the data bucket, when it is KMS-encrypted. */
  public readonly encryptionKey?: kms.IKey;
  /** The bucket that receives the data bucket's server access logs (only when this construct created the data bucket). */
  public readonly accessLogsBucket?: s3.IBucket;

  constructor(scope: Construct, id: string, props: DatasetStoreProps = {}) {
    super(scope, id);
    // Log delivery by bucket policy, never by ACL: the log bucket keeps ACLs disabled whatever the app's flags.
    this.node.setContext('@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy', true);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const noncurrentVersionExpiration = props.noncurrentVersionExpiration ?? Duration.days(30);
    const checkpointExpiration = props.checkpointExpiration ?? Duration.days(14);
    const accessLogsRetention = props.accessLogsRetention ?? Duration.days(365);
    requireWholeDays(this, 'noncurrentVersionExpiration', noncurrentVersionExpiration);
    requireWholeDays(this, 'checkpointExpiration', checkpointExpiration);
    requireWholeDays(this, 'accessLogsRetention', accessLogsRetention);

    if (props.bucket) {
      if (props.accessLogsBucket || props.datasetAdminRole) {
        throw new TuneyardValidationError(
          'accessLogsBucket and datasetAdminRole configure a bucket that Tuneyard creates; with an imported `bucket` they would be ignored. ' +
            'Remove them, or drop `bucket` to let Tuneyard create the data bucket.',
          this,
        );
      }
      this.bucket = props.bucket;
      this.encryptionKey = props.encryptionKey ?? props.bucket.encryptionKey;
      Annotations.of(this).addWarningV2(
        'tuneyard:imported-data-bucket',
        `The data bucket ${props.bucket.node.path} is imported: its encryption, versioning, lifecycle, access logging and the write-once ` +
          'policy on datasets/ are not managed by Tuneyard. Make sure the bucket owner applies them.',
      );
      return;
    }

    this.encryptionKey =
      props.encryptionKey ??
      new kms.Key(this, 'Key', {
        description: 'Tuneyard data: datasets, training artifacts, checkpoints and eval reports',
        enableKeyRotation: true,
        removalPolicy,
      });

    if (props.accessLogsBucket) {
      this.accessLogsBucket = props.accessLogsBucket;
    } else {
      const logs = new s3.Bucket(this, 'AccessLogs', {
        // S3 server access log delivery supports SSE-S3 only, not SSE-KMS.
        encryption: s3.BucketEncryption.S3_MANAGED,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforceSSL: true,
        versioned: true,
        removalPolicy,
        lifecycleRules: [
          {
            id: 'expire-access-logs',
            expiration: accessLogsRetention,
            noncurrentVersionExpiration: Duration.days(1),
          },
        ],
      });
      for (const [rule, reason] of Object.entries(LOG_BUCKET_ACKNOWLEDGEMENTS)) {
        Validations.of(logs).acknowledge({ id: rule, reason });
      }
      this.accessLogsBucket = logs;
    }

    const bucket = new s3.Bucket(this, 'Resource', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.encryptionKey,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      versioned: true,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'data-bucket/',
      removalPolicy,
      lifecycleRules: [
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
        {
          id: 'expire-checkpoints',
          prefix: DATA_PREFIXES.checkpoints,
          expiration: checkpointExpiration,
          noncurrentVersionExpiration: Duration.days(1),
        },
        ...[DATA_PREFIXES.artifacts, DATA_PREFIXES.evalReports, DATA_PREFIXES.baseModels].map((prefix) => ({
          id: `expire-noncurrent-${prefix.replace(/\/$/, '')}`,
          prefix,
          noncurrentVersionExpiration,
        })),
      ],
    });
    this.addWriteOncePolicy(bucket, props.datasetAdminRole);
    const replication = inControlPacks(
      'S3BucketReplicationEnabled',
      'Cross-region replication doubles storage cost and copies training data to a second region, which data-residency rules often forbid; ' +
        'versioning and retention protect against loss in-region. Teams that need it add a replication rule to this bucket.',
    );
    for (const [rule, reason] of Object.entries(replication)) Validations.of(bucket).acknowledge({ id: rule, reason });
    this.bucket = bucket;
  }

  /** Read access to dataset versions (all of them, or one dataset's). */
  public grantReadDatasets(grantee: iam.IGrantable, datasetName?: string): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.datasets + (datasetName ? `${datasetName}/` : ''), READ_ACTIONS, 'read');
  }

  /**
   * Write access to `datasets/`: new dataset versions only (each `PutObject` must carry
   * `If-None-Match: *`; overwrites and deletes stay denied by the bucket policy).
   */
  public grantWriteDatasets(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.datasets, WRITE_ACTIONS, 'write');
  }

  /** Listing of `datasets/` only: the keys, not the objects (no object read, no use of the key). */
  public grantListDatasets(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [this.bucket.bucketArn],
      resource: this.bucket,
      conditions: { StringLike: { 's3:prefix': `${DATA_PREFIXES.datasets}*` } },
    });
  }

  /** Read access to training artifacts (adapters, merged models). */
  public grantReadArtifacts(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.artifacts, READ_ACTIONS, 'read');
  }

  /** Write access to training artifacts. */
  public grantWriteArtifacts(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.artifacts, WRITE_ACTIONS, 'write');
  }

  /** Read and write access to spot checkpoints (a resumed job reads what it wrote). */
  public grantReadWriteCheckpoints(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.checkpoints, [...READ_ACTIONS, ...WRITE_ACTIONS, 's3:DeleteObject'], 'readwrite');
  }

  /** Read access to staged base models (the `model` channel of network-isolated jobs). */
  public grantReadBaseModels(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.baseModels, READ_ACTIONS, 'read');
  }

  /** Write access to staged base models. */
  public grantWriteBaseModels(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.baseModels, WRITE_ACTIONS, 'write');
  }

  /** Read access to eval reports. */
  public grantReadEvalReports(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.evalReports, READ_ACTIONS, 'read');
  }

  /** Write access to eval reports. */
  public grantWriteEvalReports(grantee: iam.IGrantable): iam.Grant {
    return this.grantPrefix(grantee, DATA_PREFIXES.evalReports, WRITE_ACTIONS, 'write');
  }

  /**
   * Bytes stored in the data bucket, noncurrent versions included (S3 storage metric
   * `AWS/S3 BucketSizeBytes`, storage class S3 Standard).
   *
   * S3 publishes storage metrics once a day, so the default period is one day; a shorter period
   * shows gaps, not more detail.
   *
   * @default - average over 1 day
   */
  public metricBucketSizeBytes(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.storageMetric('BucketSizeBytes', 'StandardStorage', props);
  }

  /**
   * Objects in the data bucket, noncurrent versions included (S3 storage metric
   * `AWS/S3 NumberOfObjects`, all storage classes). Published once a day.
   *
   * @default - average over 1 day
   */
  public metricNumberOfObjects(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.storageMetric('NumberOfObjects', 'AllStorageTypes', props);
  }

  /** The `s3://bucket/prefix` URI of one of the layout's prefixes, for job and pipeline definitions. */
  public s3Uri(prefix: keyof typeof DATA_PREFIXES): string {
    return `s3://${this.bucket.bucketName}/${DATA_PREFIXES[prefix]}`;
  }

  private storageMetric(metricName: string, storageType: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: 'AWS/S3',
      metricName,
      dimensionsMap: { BucketName: this.bucket.bucketName, StorageType: storageType },
      statistic: cloudwatch.Stats.AVERAGE,
      period: Duration.days(1),
      ...props,
    });
  }

  private grantPrefix(grantee: iam.IGrantable, prefix: string, objectActions: string[], keyUse: 'read' | 'write' | 'readwrite'): iam.Grant {
    const grant = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: objectActions,
      resourceArns: [this.bucket.arnForObjects(`${prefix}*`)],
      resource: this.bucket,
    });
    iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [this.bucket.bucketArn],
      resource: this.bucket,
      conditions: { StringLike: { 's3:prefix': `${prefix}*` } },
    });
    if (this.encryptionKey) {
      if (keyUse !== 'write') this.encryptionKey.grantDecrypt(grantee);
      if (keyUse !== 'read') this.encryptionKey.grant(grantee, 'kms:GenerateDataKey', 'kms:Decrypt');
    }
    return grant;
  }

  private addWriteOncePolicy(bucket: s3.Bucket, admin?: iam.IRole): void {
    const datasets = bucket.arnForObjects(`${DATA_PREFIXES.datasets}*`);
    const exceptAdmin = admin ? { ArnNotEquals: { 'aws:PrincipalArn': admin.roleArn } } : {};
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DatasetVersionsAreWriteOnce',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject'],
        resources: [datasets],
        conditions: {
          // PutObject and CompleteMultipartUpload without If-None-Match could overwrite a version.
          Null: { 's3:if-none-match': 'true' },
          Bool: { 's3:ObjectCreationOperation': 'true' },
          ...exceptAdmin,
        },
      }),
    );
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DatasetVersionsAreNeverDeleted',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:DeleteObject', 's3:DeleteObjectVersion'],
        resources: [datasets],
        ...(admin ? { conditions: exceptAdmin } : {}),
      }),
    );
  }
}

const READ_ACTIONS = ['s3:GetObject', 's3:GetObjectVersion', 's3:GetObjectAttributes'];
const WRITE_ACTIONS = ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'];

const LOG_BUCKET_ACKNOWLEDGEMENTS: Record<string, string> = {
  'AwsSolutions-S1': "This bucket is the target of the data bucket's server access logs; logging it to itself would loop.",
  ...inControlPacks('S3BucketLoggingEnabled', "This bucket is the target of the data bucket's server access logs; logging it to itself would loop."),
  ...inControlPacks(
    'S3BucketReplicationEnabled',
    "Access logs are an audit trail kept in-region for their retention period; copying them to another region is left to the account's central log archive.",
  ),
  ...inControlPacks('S3DefaultEncryptionKMS', 'S3 server access log delivery supports SSE-S3 only; a KMS default key would make log delivery fail.'),
};

function requireWholeDays(scope: Construct, prop: string, value: Duration): void {
  const days = value.toDays({ integral: false });
  if (Token.isUnresolved(days)) return;
  if (!Number.isInteger(days) || days < 1) {
    throw new TuneyardValidationError(
      `${prop} must be a whole number of days, at least 1 (S3 lifecycle rules count in days); got ${value.toHumanString()}. Use e.g. Duration.days(30).`,
      scope,
    );
  }
}
