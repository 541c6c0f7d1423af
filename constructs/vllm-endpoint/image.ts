import { CfnMapping, Stack, Token } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';

/**
 * The vLLM SageMaker DLC tag Tuneyard pins by default: AWS's Amazon Linux 2023 vLLM image for
 * SageMaker (vLLM 0.20 dev build, CUDA 12.9.1, Python 3.12), released 2026-05-12 as
 * `server-sagemaker-cuda-v1.3`. It serves on port 8080, reads `SM_VLLM_*` variables as
 * `vllm serve` flags, and routes `/invocations` to the OpenAI-compatible handlers.
 */
export const DEFAULT_VLLM_DLC_TAG = 'server-sagemaker-cuda-v1.3';

/**
 * The NVIDIA driver (major version) that the CUDA 13 vLLM DLC tags need: `server-sagemaker-cuda-v2.0`
 * and later bundle CUDA 13.0.2 and require driver 580 or later (the DLC changelog), which on
 * SageMaker means InferenceAmiVersion `al2023-ami-sagemaker-inference-gpu-4-1`. The v1.x tags
 * (CUDA 12.9.1) run on the default `al2-ami-sagemaker-inference-gpu-3-1`.
 */
export const VLLM_DLC_V2_MIN_DRIVER = 580;

/** The ECR repository of the vLLM DLC in the DLC registry account of each region. */
export const VLLM_DLC_REPOSITORY = 'vllm';

/**
 * The account that hosts AWS Deep Learning Containers in each region: the region table of the
 * deep-learning-containers project (docs/reference/region_availability.md). Most regions share
 * 763104351884; opt-in regions have their own (ap-east-2 975050140332, ap-southeast-6 633930458069, ...).
 */
export const DLC_ACCOUNTS: Readonly<Record<string, string>> = {
  'us-east-1': '763104351884',
  'us-east-2': '763104351884',
  'us-west-1': '763104351884',
  'us-west-2': '763104351884',
  'af-south-1': '626614931356',
  'ap-east-1': '871362719292',
  'ap-east-2': '975050140332',
  'ap-south-1': '763104351884',
  'ap-south-2': '772153158452',
  'ap-southeast-1': '763104351884',
  'ap-southeast-2': '763104351884',
  'ap-southeast-3': '907027046896',
  'ap-southeast-4': '457447274322',
  'ap-southeast-5': '550225433462',
  'ap-southeast-6': '633930458069',
  'ap-southeast-7': '590183813437',
  'ap-northeast-1': '763104351884',
  'ap-northeast-2': '763104351884',
  'ap-northeast-3': '364406365360',
  'ca-central-1': '763104351884',
  'ca-west-1': '204538143572',
  'eu-central-1': '763104351884',
  'eu-central-2': '380420809688',
  'eu-west-1': '763104351884',
  'eu-west-2': '763104351884',
  'eu-west-3': '763104351884',
  'eu-north-1': '763104351884',
  'eu-south-1': '692866216735',
  'eu-south-2': '503227376785',
  'il-central-1': '780543022126',
  'me-south-1': '217643126080',
  'me-central-1': '914824155844',
  'me-west-1': '124382933778',
  'mx-central-1': '637423239942',
  'sa-east-1': '763104351884',
  'cn-north-1': '727897471807',
  'cn-northwest-1': '727897471807',
};

/** What an image gives the model: its URI, after granting the role what pulling it needs. */
export interface VllmImageConfig {
  /** The image URI the model's container runs. */
  readonly imageUri: string;
  /**
   * The oldest NVIDIA driver (major version) the image runs on, when Tuneyard knows it: the
   * endpoint then refuses an InferenceAmiVersion with an older driver, and picks one that has it
   * by default.
   *
   * @default - unknown: no check
   */
  readonly minimumNvidiaDriver?: number;
}

/** The container image that serves the model. */
export abstract class VllmImage {
  /**
   * AWS's vLLM SageMaker DLC, from the DLC account of the stack's region (a table in code, so
   * synth needs no lookup; a region-agnostic stack gets a `Fn::FindInMap`).
   *
   * @param tag the image tag; pin it (the default is {@link DEFAULT_VLLM_DLC_TAG})
   */
  public static dlc(tag: string = DEFAULT_VLLM_DLC_TAG): VllmImage {
    return new DlcImage(tag);
  }

  /** Any image URI (your own build of vLLM that follows the SageMaker container contract). */
  public static fromUri(imageUri: string): VllmImage {
    return new UriImage(imageUri);
  }

  /** An image in one of your ECR repositories; the model's role is granted pull on it. */
  public static fromEcrRepository(repository: ecr.IRepository, tag: string): VllmImage {
    return new EcrImage(repository, tag);
  }

  /** Resolves the URI and grants `role` (when given) what pulling the image needs. */
  public abstract bind(scope: Construct, role?: iam.IGrantable): VllmImageConfig;
}

class DlcImage extends VllmImage {
  constructor(private readonly tag: string) {
    super();
  }

  public bind(scope: Construct, role?: iam.IGrantable): VllmImageConfig {
    const stack = Stack.of(scope);
    let account: string;
    let suffix: string;
    if (Token.isUnresolved(stack.region)) {
      const mapping =
        (stack.node.tryFindChild('TuneyardDlcAccounts') as CfnMapping | undefined) ??
        new CfnMapping(stack, 'TuneyardDlcAccounts', {
          mapping: Object.fromEntries(Object.entries(DLC_ACCOUNTS).map(([region, id]) => [region, { account: id }])),
        });
      account = mapping.findInMap(stack.region, 'account');
      suffix = stack.urlSuffix;
    } else {
      const found = DLC_ACCOUNTS[stack.region];
      if (!found) {
        throw new TuneyardValidationError(
          `the vLLM DLC is not published in region ${stack.region} (known regions: ${Object.keys(DLC_ACCOUNTS).join(', ')}). ` +
            'Copy the image to your own ECR repository and pass image: VllmImage.fromEcrRepository(repo, tag).',
          scope,
        );
      }
      account = found;
      suffix = stack.region.startsWith('cn-') ? 'amazonaws.com.cn' : 'amazonaws.com';
    }
    const repositoryArn = stack.formatArn({ service: 'ecr', account, resource: 'repository', resourceName: VLLM_DLC_REPOSITORY });
    if (role) grantPull(role, [repositoryArn]);
    // server-sagemaker-cuda-vMAJOR[.MINOR]: v2 and later are built on CUDA 13.
    const major = /-cuda-v(\d+)(\.|$)/.exec(this.tag)?.[1];
    return {
      imageUri: `${account}.dkr.ecr.${stack.region}.${suffix}/${VLLM_DLC_REPOSITORY}:${this.tag}`,
      minimumNvidiaDriver: major !== undefined && Number(major) >= 2 ? VLLM_DLC_V2_MIN_DRIVER : undefined,
    };
  }
}

class UriImage extends VllmImage {
  constructor(private readonly uri: string) {
    super();
  }

  public bind(): VllmImageConfig {
    // The owner of a custom URI grants pull (a same-account ECR image needs none beyond the role's own policy).
    return { imageUri: this.uri };
  }
}

class EcrImage extends VllmImage {
  constructor(
    private readonly repository: ecr.IRepository,
    private readonly tag: string,
  ) {
    super();
  }

  public bind(_scope: Construct, role?: iam.IGrantable): VllmImageConfig {
    if (role) grantPull(role, [this.repository.repositoryArn]);
    return { imageUri: this.repository.repositoryUriForTag(this.tag) };
  }
}

function grantPull(role: iam.IGrantable, repositoryArns: string[]): void {
  role.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'],
      resources: repositoryArns,
    }),
  );
  // GetAuthorizationToken has no resource-level permissions: the owner of the role acknowledges the wildcard.
  role.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }));
}
