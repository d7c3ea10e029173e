/** The slice of a clinic's configuration a call actor runs with, copied at the call's start. */
import type { CallTenant } from '../../machines/call/call.types.js';
import type { Tenant } from '../config/tenant.schema.js';

/** `openNow`: the clinic's hours at the call's start (src/config/hours.ts); default open. */
export function toCallTenant(tenant: Tenant, openNow = true): CallTenant {
  return {
    id: tenant.id,
    openNow,
    consent: { required: tenant.consent.required, onRefusal: tenant.consent.onRefusal },
    recordingEnabled: tenant.recording.enabled,
    emergency: {
      keywords: tenant.emergency.keywords,
      digit: tenant.emergency.digit,
      hasLine: tenant.transfer.emergency !== undefined,
    },
    menu: tenant.menu,
    backchannels: tenant.backchannels,
    timing: { ...tenant.timing },
    limits: { maxCallMs: tenant.limits.maxCallSeconds * 1000 },
  };
}
