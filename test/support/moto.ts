import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

/** A moto server on 127.0.0.1, from the project's Python environment (scripts/python-env.sh). */
export interface MotoServer {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** What an SDK v3 client needs to talk to it. */
  readonly clientConfig: { region: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  stop(): Promise<void>;
}

/** Starts a moto server on a free port and waits until it answers. */
export async function startMoto(region = 'us-east-1'): Promise<MotoServer> {
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const venv = process.env.TUNEYARD_VENV ?? execFileSync('bash', [path.join(__dirname, '..', '..', 'scripts', 'python-env.sh')], { encoding: 'utf8' }).trim();
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const server: ChildProcess = spawn(path.join(venv, 'bin', 'moto_server'), ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  await waitForServer(endpoint);
  return {
    endpoint,
    clientConfig: { region, endpoint, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } },
    stop: async () => {
      if (server.exitCode !== null) return;
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill();
      await exited;
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

async function waitForServer(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const req = http.get(`${url}/moto-api/`, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`moto_server did not start at ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
