/** A private redis-server on a free loopback port for one test file (Debian's package; .ci/run installs it). */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

export class RedisServer {
  private process: ChildProcess | null = null;

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort());
    await server.restart();
    return server;
  }

  /** Starts the server (again, on the same port) and waits until it answers. */
  async restart(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'], { stdio: 'ignore' });
    let spawnError: Error | undefined;
    child.on('error', (error) => (spawnError = error));
    this.process = child;
    const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      for (let attempt = 0; attempt < 100; attempt++) {
        if (child.exitCode !== null || spawnError) throw new Error(`redis-server did not run (${spawnError?.message ?? `exit ${child.exitCode}`}); install it: apt-get install redis-server`);
        if (await client.connect().then(() => true, () => false)) return;
        await sleep(50);
      }
      throw new Error('redis-server did not start');
    } finally {
      client.disconnect();
    }
  }

  /** A client of its own, for the test to poke the server directly. */
  client(): Redis {
    const client = new Redis(this.url);
    client.on('error', () => undefined);
    return client;
  }

  async stop(): Promise<void> {
    const child = this.process;
    this.process = null;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
