// Replaced at bundle time by esbuild's --define; the fallback is for running from source.
declare const __ZSHIELD_VERSION__: string | undefined;
export const VERSION: string = typeof __ZSHIELD_VERSION__ === 'string' ? __ZSHIELD_VERSION__ : '0.0.0-dev';
