import * as fs from 'node:fs';
import * as path from 'node:path';
import { RUNBOOK, RunbookEntry, runbookAnchor } from '../../constructs/plane-dashboard';

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function githubAnchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

describe('runbook', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.split(/^## Runbook$/m)[1]?.split(/^## /m)[0] ?? '';
  const headings = [...section.matchAll(/^### (.+)$/gm)].map((m) => m[1]);

  test('every entry the dashboard and alarms link to is a heading of the README runbook, with the same anchor', () => {
    expect(headings.map(githubAnchor)).toEqual((Object.keys(RUNBOOK) as RunbookEntry[]).map(runbookAnchor));
  });

  test('every alarm entry says what it means, what to check first and how to fix it', () => {
    for (const entry of section.split(/^### /m).slice(1)) {
      expect(entry).toMatch(/\*\*Means:\*\*[\s\S]+\*\*First checks:\*\*[\s\S]+\*\*Fixes:\*\*/);
    }
  });
});
