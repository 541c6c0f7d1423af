import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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
  if (isCredentialsError(e)) {
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


function isCredentialsError(e: Error): boolean {
  return e.name === 'CredentialsProviderError' || /Could not load credentials|Could not resolve credentials/i.test(e.message);
}

/** Whether an error is the SDK failing to find credentials or a region: what a misspelt --profile leads to. */
export function isCredentialsOrRegionError(e: unknown): boolean {
  return e instanceof Error && (isCredentialsError(e) || /^Region is missing$/.test(e.message) || e.name === 'ProfileNotFound');
}

/** The shared config and credentials files the AWS SDK reads profiles from (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/). */
export function awsProfileFiles(env: NodeJS.ProcessEnv = process.env): { readonly config: string; readonly credentials: string } {
  const home = env.HOME ?? os.homedir();
  return {
    config: env.AWS_CONFIG_FILE || path.join(home, '.aws', 'config'),
    credentials: env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, '.aws', 'credentials'),
  };
}

/**
 * The profiles the two files define: `[default]` and `[profile NAME]` in the config file, `[NAME]` in
 * the credentials file (sso-session and services sections are not profiles). A missing file defines none.
 */
export function awsProfiles(files = awsProfileFiles()): string[] {
  const names = new Set<string>();
  const read = (file: string) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  for (const line of read(files.config).split(/\r?\n/)) {
    const m = /^\s*\[\s*(?:profile\s+)?([^\]\s]+)\s*\]/.exec(line);
    if (m && (/^\s*\[\s*profile\s/.test(line) || m[1] === 'default')) names.add(m[1]);
  }
  for (const line of read(files.credentials).split(/\r?\n/)) {
    const m = /^\s*\[\s*([^\]\s]+)\s*\]/.exec(line);
    if (m) names.add(m[1]);
  }
  return [...names].sort();
}

/** A message naming a --profile that neither file defines, where profiles are read from and which exist; undefined when it exists. */
export function missingProfileMessage(profile: string, files = awsProfileFiles()): string | undefined {
  const profiles = awsProfiles(files);
  if (profiles.includes(profile)) return undefined;
  const there = profiles.length ? `profiles there: ${profiles.join(', ')}` : 'no profiles there';
  return (
    `AWS profile "${profile}" (--profile or AWS_PROFILE) not found in ${files.config} or ${files.credentials} ` +
    `(AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE move them); ${there}. Create it with \`aws configure --profile ${profile}\` ` +
    `(or \`aws configure sso --profile ${profile}\`), or pass an existing one`
  );
}
