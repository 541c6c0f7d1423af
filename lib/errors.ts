import { IConstruct } from 'constructs';

/**
 * Thrown at synth when a prop or configuration value is invalid.
 *
 * The message says what is wrong, the value given, and the fix; when the error belongs to a
 * construct its path is prepended so the user can find the offending code.
 */
export class TuneyardValidationError extends Error {
  constructor(message: string, scope?: IConstruct) {
    super(scope ? `[${scope.node.path}] ${message}` : message);
    this.name = 'TuneyardValidationError';
  }
}
