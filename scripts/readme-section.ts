/**
 * The command line of the scripts that generate a section of README.md (construct-reference.ts,
 * recipe-reference.ts): rewrite the README with the section rendered, or with `--check` fail when it differs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Rewrites README.md with `render(readme)`; with `--check`, exits 1 (naming `source` and the command) when it differs. */
export function writeReadmeSection(section: string, source: string, script: string, render: (readme: string) => string): void {
  const file = path.resolve(__dirname, '..', 'README.md');
  const readme = fs.readFileSync(file, 'utf8');
  const rendered = render(readme);
  if (process.argv.includes('--check')) {
    if (rendered !== readme) {
      console.error(`README.md: the ${section} differs from ${source}; run npx tsx scripts/${script}`);
      process.exit(1);
    }
  } else if (rendered !== readme) {
    fs.writeFileSync(file, rendered);
    console.log(`README.md: ${section} rewritten`);
  } else {
    console.log(`README.md: ${section} up to date`);
  }
}
