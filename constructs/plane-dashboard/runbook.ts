/**
 * The README's runbook entries (`## Runbook` in README.md), one per alarm plus one per dashboard
 * section without an alarm. The dashboard's text widgets and the alarms' descriptions link here;
 * a test checks that every entry is a heading of the README.
 */
export const RUNBOOK = {
  pipelineRunsFailed: 'Pipeline runs failed',
  endpoint5xxRate: 'Endpoint 5xx error rate',
  endpointLatency: 'Endpoint p99 model latency',
  endpointGpuMemory: 'Endpoint GPU memory saturation',
  endpointNoCapacity: 'Endpoint has no capacity',
  training: 'Training is slow or not learning',
  data: 'Data bucket growth',
} as const;

/** One runbook entry. */
export type RunbookEntry = keyof typeof RUNBOOK;

/** The GitHub anchor of a runbook entry's heading (`### Pipeline runs failed` → `pipeline-runs-failed`). */
export function runbookAnchor(entry: RunbookEntry): string {
  return RUNBOOK[entry]
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');
}

/**
 * A Markdown reference to a runbook entry: a link when the README's URL is known, else the
 * section's name in the README.
 */
export function runbookMarkdown(entry: RunbookEntry, runbookUrl?: string): string {
  return runbookUrl ? `[${RUNBOOK[entry]}](${runbookUrl}#${runbookAnchor(entry)})` : `README.md, Runbook: *${RUNBOOK[entry]}*`;
}

/** A plain-text reference to a runbook entry, for alarm descriptions (which reach SNS subscribers). */
export function runbookText(entry: RunbookEntry, runbookUrl?: string): string {
  return runbookUrl ? `${runbookUrl}#${runbookAnchor(entry)}` : `README.md#${runbookAnchor(entry)}`;
}
