/** Every test file: local-voice renderings go through the run's clip cache (./global-setup.ts). */
import { inject } from 'vitest';
import { useClipCache } from '../../src/providers/tts/clip-cache.js';

useClipCache(inject('clipCacheDir') || null);
