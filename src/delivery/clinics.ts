/**
 * Each clinic's delivery settings as the outbox and the call pipeline need them: the clinic file's
 * `followUps` block with the webhook secret resolved from the environment (tenants.ts checked it
 * at start-up), and the channels this deployment can serve (e-mail needs SMTP_URL, texts need
 * Twilio credentials). A channel the deployment cannot serve is off for every clinic.
 */
import type { TenantDirectory } from '../config/tenants.js';
import type { ClinicDelivery } from './types.js';

export function clinicDeliveries(
  tenants: Pick<TenantDirectory, 'all' | 'secretsOf'>,
  deployment: { smtp: boolean; sms: boolean },
): (clinicId: string) => ClinicDelivery | null {
  const byId = new Map<string, ClinicDelivery>();
  for (const tenant of tenants.all()) {
    const { webhook, email, sms } = tenant.followUps;
    const secret = tenants.secretsOf(tenant.id).webhookSecret;
    byId.set(tenant.id, Object.freeze({
      name: tenant.name,
      webhook: webhook && secret ? { url: webhook.url, secret } : null,
      email: email && deployment.smtp ? { to: [...email.to], from: email.from ?? null } : null,
      sms: sms.enabled && deployment.sms && tenant.phoneNumbers[0] ? { from: tenant.phoneNumbers[0] } : null,
    }));
  }
  return (clinicId) => byId.get(clinicId) ?? null;
}
