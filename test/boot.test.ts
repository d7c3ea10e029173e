/**
 * The real entry point under plain Node (no vitest module interop): `npm start`'s command with an
 * empty environment serves /twilio/health, then drains and exits 0 on SIGTERM. Catches CommonJS
 * named-import crashes that vitest would hide.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from './support/net.js';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('npm start', () => {
  it('boots with no keys and no configuration, serves health, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 45_000;
      while (!output.includes('vetline ready')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`engine did not start:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const res = await fetch(`http://127.0.0.1:${port}/twilio/health`);
      expect(res.status).toBe(200);
      const health = (await res.json()) as Record<string, unknown>;
      expect(health).toMatchObject({ status: 'ok', activeCalls: 0, webhookValidation: 'off-development' });
      expect(output).toContain('TWILIO WEBHOOK SIGNATURES ARE NOT VALIDATED');
      // One line says which mode and why: conveniences for this machine only (NODE_ENV unset, loopback).
      const mode = output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => typeof l.reason === 'string' && l.mode !== undefined);
      expect(mode).toMatchObject({ mode: 'local', reason: expect.stringContaining('NODE_ENV is unset') as unknown });
      expect((await fetch(`http://127.0.0.1:${port}/twilio/sessions`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/twilio/sessions`, { headers: { 'x-forwarded-for': '203.0.113.9' } })).status).toBe(403);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 60_000);

  it('refuses to start in production without a Twilio auth token or stream token secret, naming the variables', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr).toContain('VET_E_CONFIG');
    expect(stderr).toContain('TWILIO_AUTH_TOKEN');
    expect(stderr).toContain('PUBLIC_BASE_URL');
    expect(stderr).toContain('STREAM_TOKEN_SECRET');
  }, 30_000);
});
