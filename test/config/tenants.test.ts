import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadTenants, tenantJsonSchema, tenantJsonSchemaText } from '../../src/config/tenants.js';
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

/** The error loadTenants(dir) throws: asserts its code, returns its lines. */
async function failure(code: ErrorCode): Promise<string[]> {
  const err: unknown = await loadTenants(dir).then(
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
