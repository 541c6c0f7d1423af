import { IConstruct } from 'constructs';
import { TuneyardValidationError } from './errors';

/**
 * Adds `source` to `sources` under its construct id, which names what `owner` makes for it
 * (PlaneAlarms' alarms, PlaneDashboard's sections). Refuses a source added twice, and two sources
 * of one kind with the same id. `where` says what the source is added to ("these alarms"), `naming`
 * what the id names ("PlaneAlarms names its alarms after it").
 */
export function addSourceById<T extends IConstruct>(owner: IConstruct, text: { where: string; naming: string }, sources: Map<string, T>, kind: string, source: T): void {
  const known = sources.get(source.node.id);
  if (known === source) {
    throw new TuneyardValidationError(`${kind} ${source.node.path} is already on ${text.where}; add each ${kind} once.`, owner);
  }
  if (known) {
    throw new TuneyardValidationError(
      `two ${kind}s have the construct id "${source.node.id}" (${known.node.path}, ${source.node.path}); ${text.naming}. Give the ${kind}s distinct ids.`,
      owner,
    );
  }
  sources.set(source.node.id, source);
}
