import { availableParallelism } from 'node:os';
import { readFile } from 'node:fs/promises';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ENV_VARS, loadEnv } from '../../src/config/env.js';
import { VetError } from '../../src/errors.js';

const SID = `AC${'0123456789abcdef'.repeat(2)}`;
const TOKEN = 'canary-auth-token-8f3a9c';
const STREAM_SECRET = '7d1f0c9a3b5e2f8a4c6d0e1b9a7f3c5d';
const PROD = { NODE_ENV: 'production', TWILIO_AUTH_TOKEN: TOKEN, PUBLIC_BASE_URL: 'https://vetline.example.com', STREAM_TOKEN_SECRET: STREAM_SECRET };
/** What `openssl rand -hex 32` prints, and a 32-character `openssl rand -base64 24`. */
const INSPECTOR = '5c0e9b2f7a4d1e8c3b6a9f2e5d8c1b4a7e0d3c6b9a2f5e8d1c4b7a0e3d6c9b2f';
const METRICS = 'q3Vt9xK2mPz7Lw4Rj8Nc5Hb1Yd6Fs0Ga';

/** The VET_E_CONFIG message of a failing env, split into its lines. */
function failure(env: NodeJS.ProcessEnv): string[] {
  try {
    loadEnv(env);
  } catch (err) {
    expect(err).toBeInstanceOf(VetError);
    expect((err as VetError).code).toBe('VET_E_CONFIG');
    return (err as VetError).message.split('\n');
  }
  throw new Error('loadEnv accepted a bad environment');
}

describe('loadEnv defaults', () => {
  it('gives a complete development config from an empty environment', () => {
    const c = loadEnv({});
    expect(c).toMatchObject({
      nodeEnv: 'development',
      port: 3000,
      host: '127.0.0.1',
      publicBaseUrl: 'http://127.0.0.1:3000',
      logLevel: 'info',
      twilio: { accountSid: null, authToken: null },
      webhookValidation: 'off-development',
      openai: { apiKey: null, baseUrl: null },
      elevenlabs: { apiKey: null, baseUrl: null },
      tenantsDir: 'config/tenants',
      journalDir: 'data/journals',
      providers: { stt: 'local', tts: 'local', agent: 'local', vad: 'local' },
      rateLimit: { maxFailuresPerMinute: 10, banMinutes: 10 },
      maxCalls: 500,
      trustProxy: null,
      inspector: { token: null },
    });
  });

  it('treats empty and blank strings as unset', () => {
    const c = loadEnv({ PORT: '', HOST: '  ', TWILIO_AUTH_TOKEN: '', PUBLIC_BASE_URL: '', STT_PROVIDER: '' });
    expect(c.port).toBe(3000);
    expect(c.host).toBe('127.0.0.1');
    expect(c.twilio.authToken).toBeNull();
    expect(c.providers.stt).toBe('local');
  });

  it('builds the development PUBLIC_BASE_URL from HOST and PORT (IPv6 in brackets)', () => {
    expect(loadEnv({ HOST: '0.0.0.0', PORT: '8080', VETLINE_DEV: '1' }).publicBaseUrl).toBe('http://0.0.0.0:8080');
    expect(loadEnv({ HOST: '::1' }).publicBaseUrl).toBe('http://[::1]:3000');
  });

  it('reads every variable', () => {
    const c = loadEnv({
      ...PROD,
      PORT: '8443',
      HOST: '0.0.0.0',
      TWILIO_ACCOUNT_SID: SID,
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: 'http://127.0.0.1:4010/v1',
      ELEVENLABS_BASE_URL: 'http://127.0.0.1:4011',
      LOG_LEVEL: 'debug',
      TENANTS_DIR: '/etc/vetline/tenants',
      JOURNAL_DIR: '/var/lib/vetline',
      TTS_PROVIDER: 'fake',
      VAD_PROVIDER: 'energy',
      RATE_LIMIT_MAX_FAILURES: '0005',
      RATE_LIMIT_BAN_MINUTES: '30',
      MAX_CALLS: '20',
      TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,fd00::/8,loopback',
      INSPECTOR_TOKEN: INSPECTOR,
      METRICS_TOKEN: METRICS,
    });
    expect(c).toMatchObject({
      nodeEnv: 'production',
      port: 8443,
      host: '0.0.0.0',
      publicBaseUrl: 'https://vetline.example.com',
      twilio: { accountSid: SID, authToken: TOKEN },
      webhookValidation: 'on',
      openai: { apiKey: 'sk-test', baseUrl: 'http://127.0.0.1:4010/v1' },
      elevenlabs: { apiKey: null, baseUrl: 'http://127.0.0.1:4011' },
      logLevel: 'debug',
      tenantsDir: '/etc/vetline/tenants',
      journalDir: '/var/lib/vetline',
      providers: { stt: 'openai', tts: 'fake', agent: 'openai', vad: 'energy' },
      rateLimit: { maxFailuresPerMinute: 5, banMinutes: 30 },
      maxCalls: 20,
      trustProxy: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8', 'loopback'],
      inspector: { token: INSPECTOR },
      metricsToken: METRICS,
      mode: 'production',
    });
  });

  it('returns a deeply frozen config', () => {
    const c = loadEnv({ TRUST_PROXY: '10.0.0.1' });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.providers)).toBe(true);
    expect(Object.isFrozen(c.twilio)).toBe(true);
    expect(Object.isFrozen(c.trustProxy)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe('providers', () => {
  it('resolves auto to the cloud provider when its key is set, else local', () => {
    expect(loadEnv({ OPENAI_API_KEY: 'sk-1' }).providers).toEqual({ stt: 'openai', tts: 'local', agent: 'openai', vad: 'local' });
    expect(loadEnv({ ELEVENLABS_API_KEY: 'el-1' }).providers).toEqual({ stt: 'elevenlabs', tts: 'elevenlabs', agent: 'local', vad: 'local' });
  });

  it('auto speech-to-text prefers Scribe when both keys are set; either can be named', () => {
    expect(loadEnv({ OPENAI_API_KEY: 'sk-1', ELEVENLABS_API_KEY: 'el-1' }).providers.stt).toBe('elevenlabs');
    expect(loadEnv({ OPENAI_API_KEY: 'sk-1', ELEVENLABS_API_KEY: 'el-1', STT_PROVIDER: 'openai' }).providers.stt).toBe('openai');
    expect(loadEnv({ ELEVENLABS_API_KEY: 'el-1', STT_PROVIDER: 'elevenlabs' }).elevenlabs.sttModel).toBe('scribe_v2_realtime');
    expect(failure({ STT_PROVIDER: 'elevenlabs', OPENAI_API_KEY: 'sk-1' })).toEqual([
      'STT_PROVIDER: elevenlabs needs ELEVENLABS_API_KEY; set ELEVENLABS_API_KEY or set STT_PROVIDER=auto',
    ]);
  });

  it('keeps an explicit choice even when a key is set', () => {
    const c = loadEnv({ OPENAI_API_KEY: 'sk-1', STT_PROVIDER: 'local', AGENT_PROVIDER: 'fake' });
    expect(c.providers).toMatchObject({ stt: 'local', agent: 'fake' });
  });

  it('refuses a cloud provider without its key, naming both variables', () => {
    expect(failure({ STT_PROVIDER: 'openai', TTS_PROVIDER: 'elevenlabs' })).toEqual([
      'STT_PROVIDER: openai needs OPENAI_API_KEY; set OPENAI_API_KEY or set STT_PROVIDER=auto',
      'TTS_PROVIDER: elevenlabs needs ELEVENLABS_API_KEY; set ELEVENLABS_API_KEY or set TTS_PROVIDER=auto',
    ]);
  });

  it('refuses a provider another kind offers', () => {
    expect(failure({ VAD_PROVIDER: 'openai' })).toEqual([
      'VAD_PROVIDER: must be one of auto|local|energy|fake (got "openai"); set VAD_PROVIDER=auto or unset it',
    ]);
  });
});

describe('webhook validation and production', () => {
  it('is on whenever a token is set, in any environment', () => {
    for (const NODE_ENV of ['development', 'test', 'production']) {
      expect(loadEnv({ ...PROD, NODE_ENV }).webhookValidation).toBe('on');
    }
  });

  it('is off only outside production without a token', () => {
    expect(loadEnv({ NODE_ENV: 'test' }).webhookValidation).toBe('off-development');
  });

  it('requires TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL and STREAM_TOKEN_SECRET in production, one line each', () => {
    const lines = failure({ NODE_ENV: 'production' });
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^PUBLIC_BASE_URL: required when NODE_ENV=production .*; set PUBLIC_BASE_URL=https:/);
    expect(lines[1]).toMatch(/^TWILIO_AUTH_TOKEN: required when NODE_ENV=production .*; set TWILIO_AUTH_TOKEN/);
    expect(lines[2]).toMatch(/^STREAM_TOKEN_SECRET: required when NODE_ENV=production .*every worker and instance must share it.*; generate one with `openssl rand -hex 32`$/);
  });

  it('STREAM_TOKEN_SECRET: optional outside production (a random key per process), strong wherever it is set, never echoed', () => {
    expect(loadEnv({}).streamTokenSecret).toBeNull();
    expect(loadEnv(PROD).streamTokenSecret).toBe(STREAM_SECRET);
    for (const env of [{ STREAM_TOKEN_SECRET: 'short-secret' }, { ...PROD, STREAM_TOKEN_SECRET: 'ab'.repeat(20) }]) {
      const lines = failure(env);
      expect(lines).toEqual(['STREAM_TOKEN_SECRET: too weak: use at least 32 random characters without spaces, not a few repeated (value not shown); generate one with `openssl rand -hex 32`']);
    }
    expect(JSON.stringify(loadEnv(PROD))).not.toContain(STREAM_SECRET);
  });

  it('REDIS_URL: redis:// or rediss:// with a host, requires STREAM_TOKEN_SECRET, never echoed; logged without its password', () => {
    const url = 'redis://:canary-redis-pw@redis.internal:6380/2';
    const c = loadEnv({ REDIS_URL: url, STREAM_TOKEN_SECRET: STREAM_SECRET });
    expect(c.redisUrl).toBe(url);
    expect(c.redisHeartbeatMs).toBe(5_000);
    expect(JSON.stringify(c)).not.toContain('canary-redis-pw');
    expect(JSON.stringify(c)).toContain('redis://:[set]@redis.internal:6380');
    expect(loadEnv({ REDIS_URL: 'rediss://redis.internal', STREAM_TOKEN_SECRET: STREAM_SECRET, REDIS_HEARTBEAT_MS: '250' }).redisHeartbeatMs).toBe(250);
    expect(failure({ REDIS_URL: url })).toEqual([
      'STREAM_TOKEN_SECRET: required when REDIS_URL is set (instances share calls: a stream reaching another instance than its webhook must verify its token there); set the same value on every instance, generated with `openssl rand -hex 32`',
    ]);
    for (const bad of ['http://:canary-redis-pw@redis.internal', 'redis://:canary-redis-pw@/0', 'redis://redis.internal/0?password=canary-redis-pw', 'redis://redis.internal/abc']) {
      const lines = failure({ REDIS_URL: bad, STREAM_TOKEN_SECRET: STREAM_SECRET });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
      expect(lines[0]).not.toContain('canary');
    }
    expect(failure({ REDIS_HEARTBEAT_MS: '50' })).toEqual(['REDIS_HEARTBEAT_MS: must be an integer 100-60000 (got "50"); set REDIS_HEARTBEAT_MS=5000 or unset it']);
  });

  it('requires https in production, accepts http elsewhere', () => {
    expect(failure({ ...PROD, PUBLIC_BASE_URL: 'http://vetline.example.com' })[0]).toMatch(/^PUBLIC_BASE_URL: must be an https origin/);
    expect(loadEnv({ PUBLIC_BASE_URL: 'http://localhost:3000' }).publicBaseUrl).toBe('http://localhost:3000');
  });
});

describe('modes (docs/configuration.md "Modes")', () => {
  it('NODE_ENV unset on loopback (npm start): local, with development conveniences for this machine only', () => {
    const c = loadEnv({});
    expect(c).toMatchObject({ mode: 'local', webhookValidation: 'off-development' });
    expect(c.modeReason).toMatch(/NODE_ENV is unset.*HOST=127\.0\.0\.1.*PUBLIC_BASE_URL=http:\/\/127\.0\.0\.1:3000.*loopback/);
    expect(loadEnv({ NODE_ENV: 'development', HOST: '::1' }).mode).toBe('local');
    expect(loadEnv({ HOST: 'localhost', PUBLIC_BASE_URL: 'http://localhost:3000' }).mode).toBe('local');
    expect(loadEnv({ VETLINE_DEV: '0' }).mode).toBe('local');
  });

  it('VETLINE_DEV=1: development, wherever it listens', () => {
    const c = loadEnv({ VETLINE_DEV: '1', HOST: '0.0.0.0', PUBLIC_BASE_URL: 'https://dev.example.com' });
    expect(c).toMatchObject({ mode: 'development', webhookValidation: 'off-development' });
    expect(c.modeReason).toContain('VETLINE_DEV=1');
    // With a Twilio token, signatures stay on even so.
    expect(loadEnv({ VETLINE_DEV: '1', TWILIO_AUTH_TOKEN: TOKEN }).webhookValidation).toBe('on');
  });

  it('reachable beyond loopback without VETLINE_DEV: protected (production access rules), so a Twilio token is required', () => {
    const c = loadEnv({ HOST: '0.0.0.0', TWILIO_AUTH_TOKEN: TOKEN });
    expect(c).toMatchObject({ mode: 'protected', webhookValidation: 'on' });
    expect(c.modeReason).toContain('HOST=0.0.0.0 is not loopback');
    expect(loadEnv({ PUBLIC_BASE_URL: 'https://vetline.example.com', TWILIO_AUTH_TOKEN: TOKEN, NODE_ENV: 'test' }).mode).toBe('protected');
    const [line, ...rest] = failure({ HOST: '0.0.0.0' });
    expect(rest).toEqual([]);
    expect(line).toMatch(/^TWILIO_AUTH_TOKEN: required when the engine is reachable beyond this machine \(HOST=0\.0\.0\.0 is not loopback.*\).*; set TWILIO_AUTH_TOKEN.* or VETLINE_DEV=1/);
    expect(failure({ PUBLIC_BASE_URL: 'https://abc.trycloudflare.com' })[0]).toMatch(/^TWILIO_AUTH_TOKEN: .*PUBLIC_BASE_URL=https:\/\/abc\.trycloudflare\.com is not loopback/);
  });

  it('production: never with VETLINE_DEV=1; VETLINE_DEV is 1 or 0', () => {
    expect(loadEnv(PROD)).toMatchObject({ mode: 'production', modeReason: 'NODE_ENV=production' });
    expect(failure({ ...PROD, VETLINE_DEV: '1' })).toEqual([
      'VETLINE_DEV: cannot be 1 when NODE_ENV=production (development conveniences: unsigned webhooks, an open inspector); unset VETLINE_DEV',
    ]);
    expect(failure({ VETLINE_DEV: 'yes' })).toEqual(['VETLINE_DEV: must be 1 or 0 (got "yes"); set VETLINE_DEV=1 for development or unset it']);
  });
});

describe('WORKERS', () => {
  it('1 by default; 1-64 or auto (the cores); several divide an unset SPEECH_WORKERS', () => {
    expect(loadEnv({}).workers).toBe(1);
    expect(loadEnv({ WORKERS: '4', SPEECH_WORKERS: '8' })).toMatchObject({ workers: 4, speechWorkers: 8 });
    expect(loadEnv({ WORKERS: '64', SPEECH_WORKERS: '64' }).speechWorkers).toBe(64);
    expect(loadEnv({ WORKERS: '64' }).speechWorkers).toBe(1);
    expect(loadEnv({ WORKERS: 'auto' }).workers).toBe(Math.min(64, availableParallelism()));
    for (const bad of ['0', '65', 'two', '-1']) {
      expect(failure({ WORKERS: bad })).toEqual([`WORKERS: must be an integer 1-64 or auto (got "${bad}"); set WORKERS=auto (one per core), WORKERS=1 (one process) or unset it`]);
    }
  });
});

describe('access tokens', () => {
  it.each(['INSPECTOR_TOKEN', 'METRICS_TOKEN'])('%s must be strong: 32+ characters, not a few repeated', (name) => {
    for (const weak of ['inspector-token-0123456789', 'a'.repeat(40), 'abcabcabcabcabcabcabcabcabcabcabcabc', 'secret passphrase with spaces in it 1234']) {
      const lines = failure({ ...PROD, [name]: weak });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^${name}: too weak: .*\\(value not shown\\); generate one with \`openssl rand -hex 32\``));
      expect(lines[0]).not.toContain(weak);
    }
    expect(loadEnv({ ...PROD, [name]: INSPECTOR })).toBeTruthy();
    expect(loadEnv({ ...PROD, [name]: METRICS })).toBeTruthy();
  });
});

describe('one line per bad variable', () => {
  it('matches the documented PORT message exactly', () => {
    expect(failure({ PORT: 'abc' })).toEqual(['PORT: must be an integer 1-65535 (got "abc"); set PORT=3000 or unset it']);
  });

  it.each([
    ['PORT', '0'],
    ['PORT', '65536'],
    ['PORT', '3000.5'],
    ['PORT', ' 3000'],
    ['HOST', 'Example.COM'],
    ['HOST', 'bad host'],
    ['NODE_ENV', 'prod'],
    ['LOG_LEVEL', 'verbose'],
    ['TWILIO_ACCOUNT_SID', 'AC123'],
    ['OPENAI_BASE_URL', 'ftp://example.com'],
    ['ELEVENLABS_BASE_URL', 'not a url'],
    ['STT_PROVIDER', 'whisper'],
    ['RATE_LIMIT_MAX_FAILURES', '-1'],
    ['RATE_LIMIT_BAN_MINUTES', '0'],
    ['MAX_CALLS', '1e3'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '1'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['TRUST_PROXY', 'proxy.internal'],
    ['INSPECTOR_TOKEN', 'short'],
  ])('%s=%j is rejected with a line naming it and a fix', (name, value) => {
    const lines = failure({ [name]: value });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^${name}: .+; (set|copy|generate|paste) `));
  });

  it.each([
    'https://Vetline.example.com',
    'https://vetline.example.com/',
    'https://vetline.example.com/twilio',
    'https://vetline.example.com?x=1',
    'https://vetline.example.com:443',
    'https://user:pw@vetline.example.com',
    'vetline.example.com',
  ])('PUBLIC_BASE_URL=%s is not an origin', (value) => {
    const [line, ...rest] = failure({ PUBLIC_BASE_URL: value });
    expect(rest).toEqual([]);
    expect(line).toMatch(/^PUBLIC_BASE_URL: must be an https .*origin/);
    expect(line).not.toContain('pw@');
  });

  it('suggests the corrected origin', () => {
    expect(failure({ PUBLIC_BASE_URL: 'https://Vetline.Example.com/' })[0]).toMatch(/; set PUBLIC_BASE_URL=https:\/\/vetline\.example\.com$/);
  });

  it('reports every bad variable at once, in a stable order', () => {
    const lines = failure({ PORT: 'x', LOG_LEVEL: 'loud', MAX_CALLS: '0', TRUST_PROXY: 'true', NODE_ENV: 'production' });
    expect(lines.map((l) => l.split(':')[0])).toEqual(['PORT', 'PUBLIC_BASE_URL', 'TWILIO_AUTH_TOKEN', 'LOG_LEVEL', 'MAX_CALLS', 'TRUST_PROXY', 'STREAM_TOKEN_SECRET']);
  });
});

describe('secrets', () => {
  const canaries = {
    TWILIO_AUTH_TOKEN: 'canary-twilio 1111',
    OPENAI_API_KEY: 'sk-canary-openai\n',
    ELEVENLABS_API_KEY: ' canary-eleven-2222',
    INSPECTOR_TOKEN: 'canary-insp',
  };

  it('never appear in error messages, even when pasted into the wrong variable', () => {
    const lines = failure({ ...canaries, PORT: 'canary-twilio 1111', TWILIO_ACCOUNT_SID: 'canary-insp' });
    expect(lines.map((l) => l.split(':')[0])).toEqual([
      'PORT',
      'TWILIO_ACCOUNT_SID',
      'TWILIO_AUTH_TOKEN',
      'OPENAI_API_KEY',
      'ELEVENLABS_API_KEY',
      'INSPECTOR_TOKEN',
    ]);
    const text = lines.join('\n');
    expect(text).not.toMatch(/canary/);
  });

  it('are shown as "[set]" when the config is logged or inspected', () => {
    const c = loadEnv({ ...PROD, OPENAI_API_KEY: 'sk-canary-1', INSPECTOR_TOKEN: 'canary-inspector-token-5e1f9a3c7b2d', METRICS_TOKEN: 'canary-metrics-token-8c2e4a6f0b1d3' });
    for (const text of [JSON.stringify(c), JSON.stringify({ config: c }), inspect(c, { depth: 5 })]) {
      expect(text).not.toMatch(/canary/);
      expect(text).toContain('[set]');
    }
    expect(c.twilio.authToken).toBe(TOKEN); // still readable by code
  });
});

describe('docs/configuration.md', () => {
  it('documents every variable', async () => {
    const md = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const documented = [...md.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...ENV_VARS].sort());
  });
});

describe('echoed values', () => {
  it('mask URL credentials and query strings', () => {
    const [line] = failure({ OPENAI_BASE_URL: 'ftp://me:canary@proxy.example/v1?key=canary' });
    expect(line).toContain('(got "ftp://***@proxy.example/v1?***")');
    expect(line).not.toContain('canary');
  });
});

describe('SMTP_URL', () => {
  it('is null when unset, and accepted as given for smtp:// and smtps://', () => {
    expect(loadEnv({}).smtpUrl).toBeNull();
    expect(loadEnv({ SMTP_URL: '' }).smtpUrl).toBeNull();
    expect(loadEnv({ SMTP_URL: 'smtp://127.0.0.1:2525' }).smtpUrl).toBe('smtp://127.0.0.1:2525');
    expect(loadEnv({ SMTP_URL: 'smtps://clinic%40example.com:p%40ss@smtp.example.com:465' }).smtpUrl).toBe(
      'smtps://clinic%40example.com:p%40ss@smtp.example.com:465',
    );
  });

  it('refuses other schemes, a missing host, a path, a query or a fragment, without echoing the value', () => {
    for (const bad of ['http://smtp.example.com', 'smtps:///no-host', 'smtp://u:canary@smtp.example.com/x', 'smtp://smtp.example.com?pool=canary', 'smtps://smtp.example.com#canary', 'canary']) {
      const lines = failure({ SMTP_URL: bad });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^SMTP_URL: must be an smtp:\/\/ or smtps:\/\/ URL/);
      expect(lines[0]).toContain('set SMTP_URL=smtps://');
      expect(lines[0]).not.toContain('canary');
    }
  });

  it('shows the password as "[set]" when the config is logged, keeping user and host', () => {
    const c = loadEnv({ SMTP_URL: 'smtps://mailer:canary-smtp-pass@smtp.example.com:465' });
    expect(c.smtpUrl).toBe('smtps://mailer:canary-smtp-pass@smtp.example.com:465'); // still readable by code
    for (const text of [JSON.stringify(c), inspect(c, { depth: 5 })]) {
      expect(text).not.toContain('canary');
      expect(text).toContain('smtps://mailer:[set]@smtp.example.com:465');
    }
  });

  it('is scrubbed from other variables it was pasted into', () => {
    const lines = failure({ SMTP_URL: 'smtps://u:canary-pw@smtp.example.com', OPENAI_BASE_URL: 'smtps://u:canary-pw@smtp.example.com' });
    expect(lines.join('\n')).not.toContain('canary');
  });
});

describe('JOURNAL_S3_URL', () => {
  it('is null when unset; s3:// names an AWS bucket and prefix, http(s):// an S3-compatible endpoint with its bucket first', () => {
    expect(loadEnv({}).journalS3).toBeNull();
    expect(loadEnv({}).awsRegion).toBe('us-east-1');
    expect(loadEnv({ JOURNAL_S3_URL: 's3://clinic-journals' }).journalS3).toEqual({ bucket: 'clinic-journals', prefix: '', endpoint: null });
    expect(loadEnv({ JOURNAL_S3_URL: 's3://clinic-journals/vetline/calls/' }).journalS3).toEqual({ bucket: 'clinic-journals', prefix: 'vetline/calls/', endpoint: null });
    expect(loadEnv({ JOURNAL_S3_URL: 'https://minio.example.com:9000/journals/eu%20west', AWS_REGION: 'eu-west-1' })).toMatchObject({
      journalS3: { bucket: 'journals', prefix: 'eu west/', endpoint: 'https://minio.example.com:9000' },
      awsRegion: 'eu-west-1',
    });
    expect(loadEnv({ JOURNAL_S3_URL: 'http://127.0.0.1:9000/journals' }).journalS3).toEqual({ bucket: 'journals', prefix: '', endpoint: 'http://127.0.0.1:9000' });
  });

  it('refuses credentials, a query, a bad bucket or another scheme with one line and a fix, without echoing the value', () => {
    for (const bad of [
      's3://AKIACANARY:canary-secret@clinic-journals', 'https://canary:pw@minio.example.com/journals', 's3://clinic-journals?canary=1', 's3://clinic-journals#canary',
      's3://Canary_Bucket', 'https://minio.example.com/', 'https://minio.example.com/journals/../canary', 'ftp://minio.example.com/journals-canary', 'canary',
    ]) {
      const lines = failure({ JOURNAL_S3_URL: bad });
      expect(lines, bad).toHaveLength(1);
      expect(lines[0]).toMatch(/^JOURNAL_S3_URL: must be s3:\/\/<bucket>\[\/<prefix>\] or, for S3-compatible storage, https \(or, outside production, http\):\/\//);
      expect(lines[0]).toContain('AWS_ACCESS_KEY_ID');
      expect(lines[0]).not.toContain('canary');
      expect(lines[0]).not.toContain('Canary');
    }
    expect(failure({ AWS_REGION: 'Europe' })).toEqual(['AWS_REGION: must be a region name such as eu-west-1 (got "Europe"); set AWS_REGION=us-east-1 or unset it']);
  });

  it('takes plain http only outside production', () => {
    const production = { NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://vetline.example.com', TWILIO_AUTH_TOKEN: 'x'.repeat(8), STREAM_TOKEN_SECRET: 'f3a9c1d7e5b2'.repeat(4) };
    expect(loadEnv({ ...production, JOURNAL_S3_URL: 'https://minio.example.com/journals' }).journalS3?.endpoint).toBe('https://minio.example.com');
    const lines = failure({ ...production, JOURNAL_S3_URL: 'http://minio.example.com/journals' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^JOURNAL_S3_URL: must be s3:\/\/<bucket>\[\/<prefix>\] or, for S3-compatible storage, https:\/\//);
  });
});
