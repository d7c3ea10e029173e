/**
 * The clinic shapes the graph walk explores (their settings: `tenants` in model.ts), largest walk
 * first so the background lanes finish together (background.ts). Kept apart from model.ts so the
 * vitest process that starts the walks never loads the machine.
 */
export const SHAPES = ['noConsentWithLine', 'consentTransferNoLine', 'consentContinue', 'closedWithLine'] as const;
export type Shape = (typeof SHAPES)[number];
