import { Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { CfnModel } from 'aws-cdk-lib/aws-sagemaker';
import { IConstruct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';

/** Where an S3 location is, for grants. */
export interface S3Location {
  /** The bucket. */
  readonly bucket: s3.IBucket;
  /** The key prefix (a folder ending in `/`) or the object key. */
  readonly key: string;
}

/** How the model container gets its weights. */
export interface VllmModelDataConfig {
  /**
   * The container properties that carry the weights: only `modelDataSource` and
   * `modelPackageName` are read (the endpoint sets the rest).
   */
  readonly container: CfnModel.ContainerDefinitionProperty;
  /** A name for the weights in messages. */
  readonly description: string;
  /**
   * The prefix the role may read (for its acknowledgement of the prefix wildcard).
   *
   * @default - no prefix wildcard finding is acknowledged for the role
   */
  readonly readPrefix?: S3Location;
}

/** The weights that vLLM serves. */
export abstract class VllmModelData {
  /**
   * An uncompressed model folder in S3 (a Hugging Face layout: `config.json`, `*.safetensors`,
   * tokenizer files), as the trainer writes under `artifacts/<run>/.../full/` or as a staged base
   * model under `base-models/`. SageMaker copies the folder to `/opt/ml/model`
   * (`ModelDataSource.S3DataSource`, `S3Prefix`, `CompressionType: None`): no tarball, which a
   * 16-140 GB model would otherwise need to unpack at every start.
   */
  public static fromS3Prefix(bucket: s3.IBucket, prefix: string): VllmModelData {
    return new S3PrefixModelData({ bucket, key: prefix });
  }

  /**
   * A registered, approved model package (for example a version in Tuneyard's model registry).
   * The package's inference specification names the image and the artifacts; `artifacts` says
   * where those artifacts live so the model's role can read them.
   */
  public static fromModelPackage(modelPackageArn: string, artifacts: S3Location): VllmModelData {
    return new ModelPackageData(modelPackageArn, artifacts);
  }

  /** Renders the container properties and grants `role` read access to the weights. */
  public abstract bind(scope: IConstruct, role: iam.IGrantable): VllmModelDataConfig;
}

class S3PrefixModelData extends VllmModelData {
  constructor(private readonly location: S3Location) {
    super();
  }

  public bind(scope: IConstruct, role: iam.IGrantable): VllmModelDataConfig {
    let prefix = this.location.key;
    if (!Token.isUnresolved(prefix)) {
      if (prefix.startsWith('s3://') || prefix.startsWith('/')) {
        throw new TuneyardValidationError(
          `model prefix "${prefix}" must be a key prefix inside the bucket, not a URI or an absolute path. Use e.g. "artifacts/run-1/model/full/".`,
          scope,
        );
      }
      if (/\.tar\.gz$/.test(prefix)) {
        throw new TuneyardValidationError(
          `model prefix "${prefix}" is a tarball; VllmModelData.fromS3Prefix serves an uncompressed model folder. Pass the folder that holds config.json.`,
          scope,
        );
      }
      if (!prefix.endsWith('/')) prefix = `${prefix}/`;
    }
    grantReadPrefix(role, { bucket: this.location.bucket, key: prefix });
    return {
      container: {
        modelDataSource: {
          s3DataSource: { s3Uri: `s3://${this.location.bucket.bucketName}/${prefix}`, s3DataType: 'S3Prefix', compressionType: 'None' },
        },
      },
      description: prefix,
      readPrefix: { bucket: this.location.bucket, key: prefix },
    };
  }
}

class ModelPackageData extends VllmModelData {
  constructor(
    private readonly arn: string,
    private readonly artifacts: S3Location,
  ) {
    super();
  }

  public bind(scope: IConstruct, role: iam.IGrantable): VllmModelDataConfig {
    if (!Token.isUnresolved(this.arn) && !/^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package\/.+/.test(this.arn)) {
      throw new TuneyardValidationError(
        `"${this.arn}" is not a model package ARN. Pass a versioned package ARN such as arn:aws:sagemaker:us-east-1:123456789012:model-package/my-group/3.`,
        scope,
      );
    }
    grantReadPrefix(role, this.artifacts);
    return { container: { modelPackageName: this.arn }, description: this.arn, readPrefix: this.artifacts };
  }
}

/** GetObject under a prefix, ListBucket limited to it, and decrypt with the bucket's key. */
export function grantReadPrefix(role: iam.IGrantable, location: S3Location): void {
  const key = location.key;
  role.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [location.bucket.arnForObjects(`${key}*`)] }),
  );
  role.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [location.bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': `${key}*` } },
    }),
  );
  location.bucket.encryptionKey?.grantDecrypt(role);
}
