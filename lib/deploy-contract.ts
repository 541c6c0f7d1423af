/**
 * What the Deploy stage's construct (IAM scopes, Catch names) shares with the deployment code
 * (lib/deploy.ts): no AWS SDK here, so that the constructs load without it.
 */

/** The error names of a deployment that did not happen (they are the Deploy stage's Step Functions errors). */
export const DEPLOY_ERRORS = {
  targetUnknown: 'Tuneyard.DeployTargetUnknown',
  notApproved: 'Tuneyard.DeployNotApproved',
  failed: 'Tuneyard.DeployFailed',
  rolledBack: 'Tuneyard.DeployRolledBack',
  timedOut: 'Tuneyard.DeployTimedOut',
} as const;

/**
 * What every model and endpoint config a deployment creates on `endpointName` starts with:
 * `<endpoint name, at most 54 characters>-` (IAM policies scope the creates to it).
 */
export function deploymentNamePrefix(endpointName: string): string {
  return `${endpointName.slice(0, 63 - 9)}-`;
}
