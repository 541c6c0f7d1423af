#!/usr/bin/env node
import { runCli } from '../lib/cli/program';

// The SDK warns on Node 20 that its releases after January 2027 need Node 22. Not actionable for
// someone running one command, and it would land in the middle of the output: the SDK's own
// switch turns it off (checked when a client is created), unless the user set it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
