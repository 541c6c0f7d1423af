/** What the Deploy stage's construct shares with its function (no AWS SDK here: the construct loads without it). */

/** The function's environment variables. */
export const DEPLOY_RUN_ENV = {
  endpointName: 'TUNEYARD_ENDPOINT_NAME',
  baseComponentName: 'TUNEYARD_BASE_COMPONENT_NAME',
  deploymentConfig: 'TUNEYARD_DEPLOYMENT_CONFIG',
  pollSeconds: 'TUNEYARD_POLL_SECONDS',
  maxPolls: 'TUNEYARD_MAX_POLLS',
} as const;
