/**
 * Limits of the SageMaker requests a run makes (CreateTrainingJob for the training and evaluation
 * jobs, CreateModelPackage for the registry), exactly as SageMaker's API model states them
 * (botocore's `data/sagemaker/<version>/service-2.json`): `lib/api-limits.test.ts` fails when a
 * value here differs from the model, or a member listed here no longer has the shape. `planRun`
 * checks every run against them, so what SageMaker would refuse after hours of training (a
 * ValidationException that no retry can fix) is refused before any job starts.
 */

/** A shape's limits as the model states them. */
export interface ApiLimit {
  /** The shape's name in the model. */
  readonly shape: string;
  /**
   * The request members that have the shape and that a run fills in, as `Operation.Member...`
   * (`[]`: a list's items; `{key}` / `{value}`: a map's keys or values).
   */
  readonly members: readonly string[];
  /** The least length (strings), number of entries (lists and maps). */
  readonly min?: number;
  /** The greatest length (strings), number of entries (lists and maps). */
  readonly max?: number;
  /** The model's pattern: a Java regular expression that must match the whole value. */
  readonly pattern?: string;
}

/** A string shape's limits, with its pattern in JavaScript. */
export interface StringLimit extends ApiLimit {
  readonly max: number;
  /** {@link ApiLimit.pattern} as a JavaScript RegExp (anchored, Unicode). */
  readonly regExp?: RegExp;
  /** When the pattern is one repeated character class: that class, to name the characters it refuses. */
  readonly allowedCharacter?: RegExp;
  /** The allowed characters in words, for messages. */
  readonly allowed?: string;
}

/** Java's `.` matches anything but a line terminator. */
const NO_LINE_TERMINATOR = /^[^\n\r\u0085\u2028\u2029]*$/u;

/** CreateTrainingJob's TrainingJobName (the training and the evaluation job). */
export const TRAINING_JOB_NAME: StringLimit = {
  shape: 'TrainingJobName',
  members: ['CreateTrainingJob.TrainingJobName'],
  min: 1,
  max: 63,
  pattern: '[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}',
  regExp: /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/,
  allowed: 'letters, digits and hyphens, starting and ending with a letter or digit',
};

/** The number of a job's HyperParameters. */
export const HYPER_PARAMETERS: ApiLimit = { shape: 'HyperParameters', members: ['CreateTrainingJob.HyperParameters'], min: 0, max: 100 };

/** A hyperparameter's name. */
export const HYPER_PARAMETER_KEY: StringLimit = {
  shape: 'HyperParameterKey',
  members: ['CreateTrainingJob.HyperParameters{key}'],
  min: 0,
  max: 256,
  pattern: '.*',
  regExp: NO_LINE_TERMINATOR,
  allowed: 'anything but line breaks',
};

/** A hyperparameter's value: at most 2,500 characters (a long `targetModules` list is one value). */
export const HYPER_PARAMETER_VALUE: StringLimit = {
  shape: 'HyperParameterValue',
  members: ['CreateTrainingJob.HyperParameters{value}'],
  min: 0,
  max: 2500,
  pattern: '.*',
  regExp: NO_LINE_TERMINATOR,
  allowed: 'anything but line breaks',
};

/** The number of a job's input channels. */
export const INPUT_DATA_CONFIG: ApiLimit = { shape: 'InputDataConfig', members: ['CreateTrainingJob.InputDataConfig'], min: 1, max: 20 };

/** An input channel's name. */
export const CHANNEL_NAME: StringLimit = {
  shape: 'ChannelName',
  members: ['CreateTrainingJob.InputDataConfig[].ChannelName'],
  min: 1,
  max: 64,
  pattern: '[A-Za-z0-9\\.\\-_]+',
  regExp: /^[A-Za-z0-9.\-_]+$/,
  allowedCharacter: /[A-Za-z0-9.\-_]/,
  allowed: 'letters, digits and . - _',
};

const S3_URI_REGEXP = /^(https|s3):\/\/([^/]+)\/?([^\n\r\u0085\u2028\u2029]*)$/u;

/** The S3 URIs of the training requests (channels, outputs, checkpoints) and of the model's metrics. */
export const S3_URI: StringLimit = {
  shape: 'S3Uri',
  members: [
    'CreateTrainingJob.InputDataConfig[].DataSource.S3DataSource.S3Uri',
    'CreateTrainingJob.OutputDataConfig.S3OutputPath',
    'CreateTrainingJob.CheckpointConfig.S3Uri',
    'CreateModelPackage.ModelMetrics.ModelQuality.Statistics.S3Uri',
  ],
  min: 0,
  max: 1024,
  pattern: '(https|s3)://([^/]+)/?(.*)',
  regExp: S3_URI_REGEXP,
  allowed: 's3://<bucket>/<key> without line breaks',
};

/** The model package's model data. */
export const S3_MODEL_URI: StringLimit = {
  shape: 'S3ModelUri',
  members: ['CreateModelPackage.InferenceSpecification.Containers[].ModelDataSource.S3DataSource.S3Uri'],
  min: 0,
  max: 1024,
  pattern: '(https|s3)://([^/]+)/?(.*)',
  regExp: S3_URI_REGEXP,
  allowed: 's3://<bucket>/<key> without line breaks',
};

/** The KMS keys of the job outputs and volumes. */
export const KMS_KEY_ID: StringLimit = {
  shape: 'KmsKeyId',
  members: ['CreateTrainingJob.OutputDataConfig.KmsKeyId', 'CreateTrainingJob.ResourceConfig.VolumeKmsKeyId'],
  min: 0,
  max: 2048,
  pattern: '[a-zA-Z0-9:/_-]*',
  regExp: /^[a-zA-Z0-9:/_-]*$/,
  allowedCharacter: /[a-zA-Z0-9:/_-]/,
  allowed: 'letters, digits and : / _ -',
};

/** The number of a model package's CustomerMetadataProperties (the run's lineage). */
export const CUSTOMER_METADATA: ApiLimit = { shape: 'CustomerMetadataMap', members: ['CreateModelPackage.CustomerMetadataProperties'], min: 1, max: 50 };

const METADATA_CHARACTER = /[\p{L}\p{Z}\p{N}_.:/=+\-@]/u;
const METADATA_REGEXP = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
const METADATA_ALLOWED = 'letters, digits, spaces and _ . : / = + - @';

/** A lineage key. */
export const CUSTOMER_METADATA_KEY: StringLimit = {
  shape: 'CustomerMetadataKey',
  members: ['CreateModelPackage.CustomerMetadataProperties{key}'],
  min: 1,
  max: 128,
  pattern: '([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,128}',
  regExp: METADATA_REGEXP,
  allowedCharacter: METADATA_CHARACTER,
  allowed: METADATA_ALLOWED,
};

/** A lineage value (the base model among them): at most 256 characters, and no parentheses, commas, quotes or braces. */
export const CUSTOMER_METADATA_VALUE: StringLimit = {
  shape: 'CustomerMetadataValue',
  members: ['CreateModelPackage.CustomerMetadataProperties{value}'],
  min: 1,
  max: 256,
  pattern: '([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,256}',
  regExp: METADATA_REGEXP,
  allowedCharacter: METADATA_CHARACTER,
  allowed: METADATA_ALLOWED,
};

/** The model package's description (`Tuneyard run <run id>; recipe <lineage.recipe>`). */
export const MODEL_PACKAGE_DESCRIPTION: StringLimit = {
  shape: 'EntityDescription',
  members: ['CreateModelPackage.ModelPackageDescription'],
  min: 0,
  max: 1024,
  pattern: '[\\p{L}\\p{M}\\p{Z}\\p{S}\\p{N}\\p{P}]*',
  regExp: /^[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*$/u,
  allowedCharacter: /[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]/u,
  allowed: 'letters, marks, spaces, symbols, digits and punctuation (no control characters)',
};

/** Every limit above (the drift test walks them). */
export const SAGEMAKER_API_LIMITS: readonly ApiLimit[] = [
  TRAINING_JOB_NAME,
  HYPER_PARAMETERS,
  HYPER_PARAMETER_KEY,
  HYPER_PARAMETER_VALUE,
  INPUT_DATA_CONFIG,
  CHANNEL_NAME,
  S3_URI,
  S3_MODEL_URI,
  KMS_KEY_ID,
  CUSTOMER_METADATA,
  CUSTOMER_METADATA_KEY,
  CUSTOMER_METADATA_VALUE,
  MODEL_PACKAGE_DESCRIPTION,
];

/**
 * Why `value` breaks `limit` as `member` (e.g. `is 2,771 characters, over the 2500 that
 * CreateTrainingJob.HyperParameters values may have`), or undefined when it does not.
 */
export function stringLimitProblem(limit: StringLimit, value: string, member: string): string | undefined {
  if (value.length > limit.max) return `is ${value.length.toLocaleString('en-US')} characters, over the ${limit.max} that ${member} may have`;
  if (limit.min !== undefined && value.length < limit.min) {
    return `is ${value.length === 0 ? 'empty' : `${value.length} characters`}, and ${member} needs at least ${limit.min}`;
  }
  if (!limit.regExp || limit.regExp.test(value)) return undefined;
  const refused = limit.allowedCharacter ? [...new Set([...value].filter((c) => !limit.allowedCharacter!.test(c)))] : [];
  const takes = limit.allowed ?? `values matching ${limit.pattern}`;
  if (refused.length) {
    const listed = refused.slice(0, 10).map((c) => JSON.stringify(c)).join(', ') + (refused.length > 10 ? ', ...' : '');
    return `has characters that ${member} refuses (${listed}): it takes only ${takes}`;
  }
  return `is not a valid ${member}: it takes ${takes}`;
}
