/** What an AWS SDK error means, for the CLI, the shared deployment code and the pipeline's handlers. */

/**
 * True when the SDK error means the named resource does not exist (SageMaker answers a Describe of
 * a missing resource with ValidationException "... not found" or "Could not find ...").
 */
export function isNotFound(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return (
    e.name === 'NotFound' ||
    e.name === 'NoSuchKey' ||
    e.name === 'ResourceNotFound' ||
    e.name === 'ExecutionDoesNotExist' ||
    ((e.name === 'ValidationException' || e.name === 'ValidationError') && /not found|does not exist|Could not find/i.test(e.message))
  );
}
