/**
 * Writes config/tenant.schema.json (the JSON Schema editors use for config/tenants/*.json) from the
 * zod schema in src/config/tenant.schema.ts. Run `npm run schema` after changing that schema;
 * test/config/tenants.test.ts fails while the committed file is stale.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tenantJsonSchemaText } from '../src/config/tenants.js';

const target = new URL('../config/tenant.schema.json', import.meta.url);
await writeFile(target, tenantJsonSchemaText());
console.log(`wrote ${fileURLToPath(target)}`);
