import * as fs from 'node:fs';
import * as path from 'node:path';
import { Arn, ArnFormat, Aws } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';

/**
 * The folder of the bundled trainer (`training-images/trainer`), found from the source tree or
 * from the published package (where this file lives under `dist/`).
 */
export function trainerDirectory(): string {
  for (const up of ['../..', '../../..']) {
    const dir = path.resolve(__dirname, up, 'training-images', 'trainer');
    if (fs.existsSync(path.join(dir, 'Dockerfile'))) return dir;
  }
  throw new TuneyardValidationError(
    `cannot find training-images/trainer/Dockerfile above ${__dirname}; reinstall the tuneyard package or use TrainingImage.fromImageUri()`,
  );
}

/**
 * The lowest GPU compute capability the bundled trainer runs on: its torch is the CUDA 13.2 build,
 * compiled for sm_75 and later (Turing, T4); Volta (V100, ml.p3) is not in it.
 * training-images/trainer/tests/test_dockerfile.py checks this against the torch the image installs.
 */
export const TRAINER_MIN_COMPUTE_CAPABILITY = 7.5;

/** Files of the trainer folder that the image does not need (tests and their fixtures). */
export const TRAINER_BUILD_EXCLUDES = ['tests', 'pytest.ini', 'requirements-test.txt', '**/__pycache__', '**/*.pyc', '.pytest_cache'];

/** Properties of {@link TrainingImage.fromBundled}. */
export interface BundledTrainingImageProps {
  /**
   * Build arguments of the trainer's Dockerfile, e.g. `{ DEEPSPEED_VERSION: '0.19.8' }`.
   *
   * @default - none: the image without the optional DeepSpeed layer
   */
  readonly buildArgs?: Record<string, string>;
}

/**
 * The container image that Tuneyard's training and evaluation jobs run: the bundled trainer
 * (built by `cdk deploy`, never at synth), an image in an ECR repository, or any image URI.
 */
export abstract class TrainingImage {
  /**
   * The bundled trainer (`training-images/trainer`), built for linux/amd64 as a Docker image asset
   * when the stack is deployed (synth only hashes the folder; it needs no Docker engine).
   */
  public static fromBundled(scope: Construct, id: string, props: BundledTrainingImageProps = {}): TrainingImage {
    const asset = new DockerImageAsset(scope, id, {
      directory: trainerDirectory(),
      platform: Platform.LINUX_AMD64,
      exclude: TRAINER_BUILD_EXCLUDES,
      buildArgs: props.buildArgs,
    });
    return new RepositoryImage(asset.imageUri, asset.repository, TRAINER_MIN_COMPUTE_CAPABILITY);
  }

  /** An image in an ECR repository, by tag (or digest, `sha256:...`). */
  public static fromEcrRepository(repository: ecr.IRepository, tagOrDigest = 'latest'): TrainingImage {
    return new RepositoryImage(repository.repositoryUriForTagOrDigest(tagOrDigest), repository);
  }

  /**
   * Any image URI. An ECR URI (`<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`) gets pull
   * permissions on that repository; for other registries `grantPull` grants nothing (SageMaker
   * pulls from ECR only, or from a private registry in the VPC with `TrainingImageConfig`).
   */
  public static fromImageUri(imageUri: string): TrainingImage {
    return new UriImage(imageUri);
  }

  /** The image URI that the training job runs. */
  public abstract readonly imageUri: string;

  /**
   * The lowest GPU compute capability the image's CUDA build runs on, when known: the pipeline
   * refuses runs on older GPUs before any job starts.
   */
  public abstract readonly minComputeCapability?: number;

  /** Lets a role (the SageMaker execution role) pull the image. */
  public abstract grantPull(grantee: iam.IGrantable): void;
}

class RepositoryImage extends TrainingImage {
  constructor(
    public readonly imageUri: string,
    private readonly repository: ecr.IRepository,
    public readonly minComputeCapability?: number,
  ) {
    super();
  }

  public grantPull(grantee: iam.IGrantable): void {
    this.repository.grantPull(grantee);
  }
}

const ECR_URI = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9._/-]+)(?::[\w.-]+|@sha256:[0-9a-f]{64})$/;

class UriImage extends TrainingImage {
  public readonly minComputeCapability?: number = undefined;

  constructor(public readonly imageUri: string) {
    super();
    if (!imageUri.includes('${Token[') && !/^[\w.-]+(:\d+)?\/[\w./-]+(:[\w.-]+|@sha256:[0-9a-f]{64})$/.test(imageUri)) {
      throw new TuneyardValidationError(
        `"${imageUri}" is not a container image URI; use <registry>/<repository>:<tag>, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:1.0`,
      );
    }
  }

  public grantPull(grantee: iam.IGrantable): void {
    const match = ECR_URI.exec(this.imageUri);
    if (!match) return;
    const [, account, region, repositoryName] = match;
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage'],
      resourceArns: [
        Arn.format({ partition: Aws.PARTITION, service: 'ecr', account, region, resource: 'repository', resourceName: repositoryName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }),
      ],
    });
    iam.Grant.addToPrincipal({ grantee, actions: ['ecr:GetAuthorizationToken'], resourceArns: ['*'] });
  }
}
