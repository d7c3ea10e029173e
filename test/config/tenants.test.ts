import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAt } from '../../src/config/hours.js';
import { loadTenants, tenantJsonSchema, tenantJsonSchemaText } from '../../src/config/tenants.js';
import type { LoadTenantsOptions } from '../../src/config/tenants.js';
import type { TenantFile } from '../../src/config/tenant.schema.js';
import { VetError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';

const SHIPPED = new URL('../../config/tenants/', import.meta.url).pathname;

const clinic = (over: Partial<TenantFile> = {}): TenantFile => ({
  id: 'test-clinic',
  name: 'Test Clinic',
  phoneNumbers: ['+15550100150'],
  greeting: 'Hello.',
  transfer: { frontDesk: '+15550100151' },
  emergency: { script: 'Go to the emergency hospital now.' },
  info: { hours: '9 to 5', address: '1 Main Street' },
  ...over,
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vetline-tenants-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const put = (name: string, content: unknown) =>
  writeFile(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));

/** The error loadTenants(dir, opts) throws: asserts its code, returns its lines. */
async function failure(code: ErrorCode, opts?: LoadTenantsOptions): Promise<string[]> {
  const err: unknown = await (opts ? loadTenants(dir, opts) : loadTenants(dir)).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VetError);
  expect((err as VetError).code).toBe(code);
  return (err as VetError).message.split('\n');
}

describe('shipped example clinics', () => {
  it('load from config/tenants with the documented policies', async () => {
    const tenants = await loadTenants(SHIPPED);
    expect(tenants.all().map((t) => t.id)).toEqual(['oak-hill-animal', 'riverside-vet']);

    const riverside = tenants.byId('riverside-vet');
    expect(riverside?.consent).toMatchObject({ required: true, onRefusal: 'continue' });
    expect(riverside?.recording.enabled).toBe(true);
    expect(riverside?.transfer.emergency).toMatch(/^\+1555010\d{4}$/);

    const oakHill = tenants.byId('oak-hill-animal');
    expect(oakHill?.consent.required).toBe(false);
    expect(oakHill?.transfer.emergency).toBeUndefined(); // emergencies end with the script
    expect(oakHill?.menu['2']).toMatchObject({ action: 'emergency' });
    expect(oakHill?.emergency.script).toMatch(/warm/);

    // Structured hours match the spoken info.hours; no webhook or desk, so no env var is needed.
    expect(riverside?.hours?.timeZone).toBe('America/Los_Angeles');
    expect(oakHill?.hours?.timeZone).toBe('America/Chicago');
    expect(openAt(riverside?.hours, Date.parse('2026-12-07T08:00:00-08:00'))).toBe(true); // Monday 8 am
    expect(openAt(riverside?.hours, Date.parse('2026-12-12T13:00:00-08:00'))).toBe(false); // Saturday 1 pm
    expect(openAt(riverside?.hours, Date.parse('2026-12-13T10:00:00-08:00'))).toBe(false); // Sunday
    expect(openAt(oakHill?.hours, Date.parse('2026-12-12T07:30:00-06:00'))).toBe(true); // Saturday 7:30 am
    expect(openAt(oakHill?.hours, Date.parse('2026-12-12T19:00:00-06:00'))).toBe(false); // 7 pm
    expect(openAt(oakHill?.hours, Date.parse('2026-12-25T10:00:00-06:00'))).toBe(false); // public holiday
    for (const t of tenants.all()) {
      expect(t.followUps.webhook).toBeUndefined();
      expect(t.desk).toBeUndefined();
      expect(tenants.secretsOf(t.id)).toEqual({ webhookSecret: null, deskToken: null });
    }
  });

  it('use only fictional 555-01xx numbers and point at the generated schema', async () => {
    for (const name of ['riverside-vet.json', 'oak-hill-animal.json']) {
      const text = await readFile(join(SHIPPED, name), 'utf8');
      for (const [number] of text.matchAll(/\+\d{8,15}/g)) expect(number).toMatch(/^\+1555010\d{4}$/);
      expect(JSON.parse(text)).toMatchObject({ $schema: '../tenant.schema.json' });
    }
  });
});

describe('loadTenants', () => {
  it('looks clinics up by number and id, null otherwise', async () => {
    await put('b.json', clinic({ id: 'clinic-b', phoneNumbers: ['+15550100160', '+15550100161'] }));
    await put('a.json', clinic({ id: 'clinic-a' }));
    await put('notes.txt', 'not a clinic');
    const tenants = await loadTenants(dir);
    expect(tenants.all().map((t) => t.id)).toEqual(['clinic-a', 'clinic-b']); // file-name order
    expect(tenants.byNumber('+15550100161')?.id).toBe('clinic-b');
    expect(tenants.byNumber('+15550100150')?.id).toBe('clinic-a');
    expect(tenants.byNumber('+15550100199')).toBeNull();
    expect(tenants.byNumber('15550100150')).toBeNull();
    expect(tenants.byId('clinic-b')?.name).toBe('Test Clinic');
    expect(tenants.byId('nope')).toBeNull();
  });

  it('fills defaults and freezes everything', async () => {
    await put('a.json', clinic());
    const tenants = await loadTenants(dir);
    const t = tenants.byId('test-clinic');
    expect(t?.timing.silencePromptMs).toBe(15_000);
    expect(t?.emergency.digit).toBe('9');
    expect(Object.isFrozen(tenants)).toBe(true);
    expect(Object.isFrozen(tenants.all())).toBe(true);
    expect(Object.isFrozen(t?.timing)).toBe(true);
    expect(Object.isFrozen(t?.phoneNumbers)).toBe(true);
  });

  it('accepts a byte-order mark', async () => {
    await put('a.json', `\uFEFF${JSON.stringify(clinic())}`);
    expect((await loadTenants(dir)).all()).toHaveLength(1);
  });

  it('names the file, line and column of broken JSON', async () => {
    await put('good.json', clinic());
    await put('broken.json', '{\n  "id": "x",\n  "name": "y",\n}\n');
    await put('truncated.json', '{\n  "id": "x"');
    await put('comment.json', '{\n  "id": "x", // the id\n}');
    expect(await failure('VET_E_TENANT_INVALID')).toEqual([
      `${join(dir, 'broken.json')}: invalid JSON at line 4, column 1: expected another item (JSON allows no trailing comma)`,
      `${join(dir, 'comment.json')}: invalid JSON at line 2, column 14: expected a property name in double quotes`,
      `${join(dir, 'truncated.json')}: invalid JSON at line 2, column 12: unexpected end of file, expected ',' or '}' (no trailing commas or comments)`,
    ]);
  });

  it('names the file and field path of every schema problem', async () => {
    const bad = {
      ...clinic(),
      phoneNumbers: ['+15550100150', '555-0100'],
      transfer: { frontDesk: '0100151', extension: '12' },
      menu: { '7': { action: 'transfer', target: 'vet', label: 'vet' }, ab: { action: 'repeat', label: 'again' } },
      greting: 'typo',
    } as unknown as TenantFile;
    delete (bad as { greeting?: string }).greeting;
    await put('x.json', bad);
    const file = join(dir, 'x.json');
    const lines = await failure('VET_E_TENANT_INVALID');
    expect(lines).toEqual(
      expect.arrayContaining([
        `${file}: phoneNumbers[1]: must be an E.164 number such as +15551230000 (got "555-0100")`,
        `${file}: greeting: required`,
        `${file}: transfer.frontDesk: must be an E.164 number such as +15551230000 (got "0100151")`,
        `${file}: transfer.extension: unknown field (check the spelling against config/tenant.schema.json)`,
        `${file}: menu.ab: menu keys are 1–4 characters of 0-9 * # (got "ab")`,
        `${file}: greting: unknown field (check the spelling against config/tenant.schema.json)`,
      ]),
    );
    expect(lines.some((l) => l.startsWith(`${file}: menu["7"].target: `))).toBe(true);
    expect(lines.every((l) => l.startsWith(`${file}: `))).toBe(true);
  });

  it('refuses two files claiming the same number, naming both', async () => {
    await put('a.json', clinic({ id: 'clinic-a', phoneNumbers: ['+15550100150'] }));
    await put('b.json', clinic({ id: 'clinic-b', phoneNumbers: ['+15550100170', '+15550100150'] }));
    expect(await failure('VET_E_TENANT_DUPLICATE')).toEqual([
      `${join(dir, 'b.json')}: phone number +15550100150 is already claimed by ${join(dir, 'a.json')}; a number routes to one clinic only`,
    ]);
  });

  it('refuses two files with the same id, naming both', async () => {
    await put('a.json', clinic({ phoneNumbers: ['+15550100150'] }));
    await put('b.json', clinic({ phoneNumbers: ['+15550100170'] }));
    expect(await failure('VET_E_TENANT_DUPLICATE')).toEqual([
      `${join(dir, 'b.json')}: id "test-clinic" is already used by ${join(dir, 'a.json')}; give each clinic its own id`,
    ]);
  });

  it('refuses an empty or missing directory', async () => {
    await mkdir(join(dir, 'sub.json')); // a directory named like a clinic file does not count
    expect((await failure('VET_E_TENANTS_EMPTY'))[0]).toContain(dir);
    dir = join(dir, 'missing');
    expect((await failure('VET_E_TENANTS_EMPTY'))[0]).toMatch(/missing: cannot read/);
  });
});

describe('hours, follow-ups and desk fields', () => {
  const WEBHOOK = { url: 'https://clinic.example/vetline', secretEnv: 'TEST_WEBHOOK_SECRET' };
  const SECRET = 'webhook-secret-0123456789';
  const TOKEN = 'desk-token-0123456789abcdef';

  it('defaults: no hours (always open), follow-ups kept 365 days, no SMS, no webhook, e-mail or desk', async () => {
    await put('a.json', clinic());
    const tenants = await loadTenants(dir, { env: {} });
    const t = tenants.byId('test-clinic');
    expect(t?.hours).toBeUndefined();
    expect(t?.followUps).toEqual({ sms: { enabled: false }, retentionDays: 365 });
    expect(t?.desk).toBeUndefined();
    expect(Object.isFrozen(t?.followUps)).toBe(true);
    expect(tenants.secretsOf('test-clinic')).toEqual({ webhookSecret: null, deskToken: null });
    expect(tenants.secretsOf('nope')).toEqual({ webhookSecret: null, deskToken: null });
  });

  it('accepts the documented shape and fills closures', async () => {
    await put('a.json', clinic({
      hours: {
        timeZone: 'America/Chicago',
        weekly: { mon: [{ open: '08:00', close: '18:00' }], sat: [{ open: '09:00', close: '12:00' }, { open: '12:00', close: '24:00' }], sun: [] },
      },
      followUps: { email: { to: ['frontdesk@clinic.example'], from: 'Vetline <vetline@clinic.example>' }, sms: { enabled: true }, retentionDays: 30 },
    }));
    const t = (await loadTenants(dir, { env: {} })).byId('test-clinic');
    expect(t?.hours?.closures).toEqual([]);
    expect(t?.hours?.weekly.sat).toHaveLength(2);
    expect(t?.followUps).toEqual({
      email: { to: ['frontdesk@clinic.example'], from: 'Vetline <vetline@clinic.example>' },
      sms: { enabled: true },
      retentionDays: 30,
    });
  });

  it('names the file and field of malformed hours', async () => {
    await put('x.json', clinic({
      hours: {
        timeZone: 'America/Chicgo',
        weekly: {
          mon: [{ open: '08:00', close: '25:00' }],
          tue: [{ open: '18:00', close: '08:00' }],
          wed: [{ open: '24:00', close: '24:00' }],
          sat: [{ open: '09:00', close: '12:00' }, { open: '11:30', close: '15:00' }],
          sun: [{ open: '9:00', close: '12:00' }],
          monday: [],
        } as never,
        closures: [{ date: '2026-02-30' }, { date: '2026-12-25', reason: 'x'.repeat(121) }, { date: '25/12/2026' }],
      },
    }));
    const file = join(dir, 'x.json');
    const lines = await failure('VET_E_TENANT_INVALID', { env: {} });
    expect(lines).toEqual(expect.arrayContaining([
      `${file}: hours.timeZone: must be an IANA time zone such as "America/Chicago" or "Europe/London" (got "America/Chicgo")`,
      `${file}: hours.weekly.mon[0].close: must be a 24-hour time "HH:MM" from "00:00" to "24:00" (got "25:00")`,
      `${file}: hours.weekly.tue[0].close: must be later than open ("18:00"); to stay open past midnight, close at "24:00" and open at "00:00" the next day (got "08:00")`,
      `${file}: hours.weekly.wed[0].open: must be a 24-hour time "HH:MM" from "00:00" to "23:59" (got "24:00")`,
      `${file}: hours.weekly.sat[1].open: overlaps or comes before the previous interval ("09:00"–"12:00"); list a day's intervals in order without overlaps (got "11:30")`,
      `${file}: hours.weekly.sun[0].open: must be a 24-hour time "HH:MM" from "00:00" to "23:59" (got "9:00")`,
      `${file}: hours.weekly.monday: unknown field (check the spelling against config/tenant.schema.json)`,
      `${file}: hours.closures[0].date: must be a calendar date "YYYY-MM-DD" such as "2026-12-25" (got "2026-02-30")`,
      `${file}: hours.closures[2].date: must be a calendar date "YYYY-MM-DD" such as "2026-12-25" (got "25/12/2026")`,
    ]));
    expect(lines.some((l) => l.startsWith(`${file}: hours.closures[1].reason: `))).toBe(true);
    expect(lines).toHaveLength(10);
  });

  it('accepts leap days, "24:00" and touching intervals', async () => {
    await put('a.json', clinic({
      hours: {
        timeZone: 'Australia/Sydney',
        weekly: { fri: [{ open: '00:00', close: '12:00' }, { open: '12:00', close: '24:00' }] },
        closures: [{ date: '2028-02-29' }],
      },
    }));
    expect((await loadTenants(dir, { env: {} })).byId('test-clinic')?.hours?.closures).toEqual([{ date: '2028-02-29' }]);
  });

  it('names the file and field of malformed follow-up and desk settings, without echoing URL credentials or queries', async () => {
    await put('x.json', clinic({
      followUps: {
        webhook: { url: 'https://user:hunter2@clinic.example/hook?key=abc', secretEnv: 'lower_case' },
        email: { to: ['not-an-address'], from: 'Vetline <vetline@clinic.example>\r\nBcc: all@example.com' },
        sms: { enabled: 'yes' as never },
        retentionDays: 0,
      },
      desk: { tokenEnv: '1TOKEN' },
    }));
    await put('y.json', clinic({ id: 'other', phoneNumbers: ['+15550100170'], followUps: { webhook: { url: 'ftp://clinic.example/x', secretEnv: 'X_SECRET' }, retentionDays: 3651 } }));
    const x = join(dir, 'x.json');
    const y = join(dir, 'y.json');
    const lines = await failure('VET_E_TENANT_INVALID', { env: {} });
    const urlRule = 'must be an absolute http(s) URL without user name, password or #fragment, e.g. https://clinic.example/vetline';
    const envRule = 'must be an environment variable name such as RIVERSIDE_WEBHOOK_SECRET (upper-case letters, digits and _)';
    expect(lines).toEqual(expect.arrayContaining([
      `${x}: followUps.webhook.url: ${urlRule} (got "https://***@clinic.example/hook?***")`,
      `${x}: followUps.webhook.secretEnv: ${envRule} (got "lower_case")`,
      `${x}: followUps.email.to[0]: must be an e-mail address such as frontdesk@clinic.example (got "not-an-address")`,
      `${x}: desk.tokenEnv: ${envRule} (got "1TOKEN")`,
      `${y}: followUps.webhook.url: ${urlRule} (got "ftp://clinic.example/x")`,
    ]));
    for (const field of ['followUps.email.from', 'followUps.sms.enabled', 'followUps.retentionDays']) {
      expect(lines.some((l) => l.startsWith(`${x}: ${field}: `))).toBe(true);
    }
    expect(lines.some((l) => l.startsWith(`${y}: followUps.retentionDays: `))).toBe(true);
    expect(lines.join('\n')).not.toMatch(/hunter2|key=abc/);
  });

  it('resolves secrets from the given env, keeps them off the Tenant, and freezes them', async () => {
    await put('a.json', clinic({ followUps: { webhook: WEBHOOK }, desk: { tokenEnv: 'TEST_DESK_TOKEN' } }));
    const tenants = await loadTenants(dir, { env: { TEST_WEBHOOK_SECRET: SECRET, TEST_DESK_TOKEN: TOKEN } });
    const secrets = tenants.secretsOf('test-clinic');
    expect(secrets).toEqual({ webhookSecret: SECRET, deskToken: TOKEN });
    expect(Object.isFrozen(secrets)).toBe(true);
    const tenant = tenants.byId('test-clinic');
    expect(tenant?.followUps.webhook).toEqual(WEBHOOK);
    expect(JSON.stringify(tenant)).not.toContain(SECRET);
    expect(JSON.stringify(tenant)).not.toContain(TOKEN);
  });

  it('refuses unset, empty or short secrets, naming file, field and variable but never the value', async () => {
    await put('a.json', clinic({ followUps: { webhook: WEBHOOK }, desk: { tokenEnv: 'TEST_DESK_TOKEN' } }));
    await put('b.json', clinic({ id: 'clinic-b', phoneNumbers: ['+15550100170'], followUps: { webhook: { ...WEBHOOK, secretEnv: 'B_WEBHOOK_SECRET' } }, desk: { tokenEnv: 'B_DESK_TOKEN' } }));
    await put('c.json', clinic({ id: 'clinic-c', phoneNumbers: ['+15550100180'], greeting: '' })); // a schema problem reported alongside
    await put('d.json', clinic({ id: 'clinic-d', phoneNumbers: ['+15550100190'], desk: { tokenEnv: 'D_DESK_TOKEN' } }));
    const [a, b, c, d] = ['a.json', 'b.json', 'c.json', 'd.json'].map((n) => join(dir, n));
    const env = { TEST_DESK_TOKEN: '', B_WEBHOOK_SECRET: 'short-secret', B_DESK_TOKEN: 'tiny', D_DESK_TOKEN: `${TOKEN}\n` };
    const lines = await failure('VET_E_TENANT_INVALID', { env });
    const hint = 'at least 16 characters, no spaces; e.g. from `openssl rand -base64 24`';
    expect(lines).toEqual([
      `${a}: followUps.webhook.secretEnv: environment variable TEST_WEBHOOK_SECRET is not set; set it to the webhook's shared secret (${hint})`,
      `${a}: desk.tokenEnv: environment variable TEST_DESK_TOKEN is not set; set it to the clinic's front-desk inbox token (${hint})`,
      `${b}: followUps.webhook.secretEnv: environment variable B_WEBHOOK_SECRET is shorter than 16 characters; set it to the webhook's shared secret (${hint})`,
      `${b}: desk.tokenEnv: environment variable B_DESK_TOKEN is shorter than 16 characters; set it to the clinic's front-desk inbox token (${hint})`,
      expect.stringMatching(/c\.json: greeting: /),
      `${d}: desk.tokenEnv: environment variable D_DESK_TOKEN holds spaces or line breaks, or more than 512 characters; set it to the clinic's front-desk inbox token (${hint})`,
    ]);
    expect(lines[4]?.startsWith(`${c}: `)).toBe(true);
    expect(lines.join('\n')).not.toMatch(/short-secret|tiny|desk-token/);
  });

  it('refuses a secret kept in one of Vetline’s own variables, and one variable for both secrets', async () => {
    await put('a.json', clinic({ followUps: { webhook: { ...WEBHOOK, secretEnv: 'OPENAI_API_KEY' } }, desk: { tokenEnv: 'INSPECTOR_TOKEN' } }));
    await put('b.json', clinic({ id: 'clinic-b', phoneNumbers: ['+15550100170'], followUps: { webhook: { ...WEBHOOK, secretEnv: 'B_SECRET' } }, desk: { tokenEnv: 'B_SECRET' } }));
    const env = { OPENAI_API_KEY: 'sk-0123456789abcdef0123', INSPECTOR_TOKEN: TOKEN, B_SECRET: SECRET };
    const lines = await failure('VET_E_TENANT_INVALID', { env });
    expect(lines).toEqual([
      expect.stringContaining(`${join(dir, 'a.json')}: followUps.webhook.secretEnv: OPENAI_API_KEY is one of Vetline's own settings`),
      expect.stringContaining(`${join(dir, 'a.json')}: desk.tokenEnv: INSPECTOR_TOKEN is one of Vetline's own settings`),
      `${join(dir, 'b.json')}: desk.tokenEnv: B_SECRET is also followUps.webhook.secretEnv; give the desk token and the webhook secret different variables`,
    ]);
    expect(lines.join('\n')).not.toContain('sk-0123');
  });

  it('refuses two clinics sharing a desk token, by variable or by value, without printing it', async () => {
    await put('a.json', clinic({ id: 'clinic-a', desk: { tokenEnv: 'A_DESK_TOKEN' } }));
    await put('b.json', clinic({ id: 'clinic-b', phoneNumbers: ['+15550100170'], desk: { tokenEnv: 'A_DESK_TOKEN' } }));
    await put('c.json', clinic({ id: 'clinic-c', phoneNumbers: ['+15550100180'], desk: { tokenEnv: 'C_DESK_TOKEN' } }));
    const lines = await failure('VET_E_TENANT_INVALID', { env: { A_DESK_TOKEN: TOKEN, C_DESK_TOKEN: TOKEN } });
    expect(lines).toEqual([
      `${join(dir, 'b.json')}: desk.tokenEnv: this clinic's desk token is the same as ${join(dir, 'a.json')}'s; each clinic needs a token of its own (A_DESK_TOKEN)`,
      `${join(dir, 'c.json')}: desk.tokenEnv: this clinic's desk token is the same as ${join(dir, 'a.json')}'s; each clinic needs a token of its own (C_DESK_TOKEN)`,
    ]);
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('webhook URL: https in production; outside it, http only to a loopback host', async () => {
    const env = { TEST_WEBHOOK_SECRET: SECRET };
    const file = join(dir, 'a.json');
    const withUrl = (url: string) => put('a.json', clinic({ followUps: { webhook: { ...WEBHOOK, url } } }));

    for (const url of ['http://127.0.0.1:8080/hook', 'http://127.9.0.1/hook', 'http://localhost:3001/x', 'http://[::1]:4000/', 'https://clinic.example/hook?tenant=1']) {
      await withUrl(url);
      expect((await loadTenants(dir, { env, nodeEnv: 'development' })).secretsOf('test-clinic').webhookSecret).toBe(SECRET);
    }
    await withUrl('http://clinic.example/hook?token=abc');
    expect(await failure('VET_E_TENANT_INVALID', { env, nodeEnv: 'test' })).toEqual([
      `${file}: followUps.webhook.url: http is allowed only for a loopback host (localhost, 127.0.0.1, ::1); use https (got "http://clinic.example/hook?***")`,
    ]);
    await withUrl('http://128.0.0.1/hook');
    expect(await failure('VET_E_TENANT_INVALID', { env })).toHaveLength(1);

    await withUrl('http://127.0.0.1:8080/hook');
    const production = [`${file}: followUps.webhook.url: must be https when NODE_ENV=production (got "http://127.0.0.1:8080/hook")`];
    expect(await failure('VET_E_TENANT_INVALID', { env, nodeEnv: 'production' })).toEqual(production);
    // Without nodeEnv, NODE_ENV from the given env decides.
    expect(await failure('VET_E_TENANT_INVALID', { env: { ...env, NODE_ENV: 'production' } })).toEqual(production);
    await withUrl('https://clinic.example/hook');
    expect((await loadTenants(dir, { env, nodeEnv: 'production' })).secretsOf('test-clinic').webhookSecret).toBe(SECRET);
  });
});

describe('JSON Schema', () => {
  it('describes the input side (defaulted fields optional, defaults shown)', () => {
    const schema = tenantJsonSchema() as { required?: string[]; properties: Record<string, { default?: unknown }> };
    expect(schema.required).toEqual(expect.arrayContaining(['id', 'name', 'phoneNumbers', 'greeting', 'transfer', 'emergency', 'info']));
    expect(schema.required).not.toContain('consent');
    expect(schema.properties.consent?.default).toEqual({});
  });

  it('config/tenant.schema.json is current (run `npm run schema` if this fails)', async () => {
    const committed = await readFile(new URL('../../config/tenant.schema.json', import.meta.url), 'utf8');
    expect(committed).toBe(tenantJsonSchemaText());
    expect(committed.endsWith('}\n')).toBe(true);
  });
});
