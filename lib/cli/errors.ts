/** An error the CLI reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Where a command was looking when an AWS call failed: used to say what to do about it. */
export interface AwsContext {
  readonly stack: string;
  readonly region?: string;
  readonly profile?: string;
}

/**
 * Turns an AWS SDK error into a message that says what is wrong and what to do, or returns
 * undefined when the error is not one the CLI knows.
 */
export function describeAwsError(e: unknown, ctx: AwsContext): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const region = ctx.region ?? '(unset)';
  if (e.name === 'CredentialsProviderError' || /Could not load credentials/i.test(e.message)) {
    const via = ctx.profile ? `profile "${ctx.profile}"` : 'the default credential chain (environment, ~/.aws, SSO, instance role)';
    return `no AWS credentials found via ${via}: run \`aws configure\` / \`aws sso login\`, or pass --profile (${e.message})`;
  }
  if (/^Region is missing$/.test(e.message)) {
    return 'no AWS region: pass --region, or set AWS_REGION or a region in your AWS profile';
  }
  if (/Stack with id .+ does not exist/.test(e.message)) {
    return `Tuneyard plane ${ctx.stack} not found in region ${region}: deploy it with \`npx cdk deploy\` or pass --stack/--region`;
  }
  if (e.name === 'ExpiredTokenException' || e.name === 'ExpiredToken') {
    return `your AWS session has expired: log in again (${e.message})`;
  }
  if (e.name === 'AccessDeniedException' || e.name === 'AccessDenied') {
    return `access denied: ${e.message}`;
  }
  return undefined;
}

