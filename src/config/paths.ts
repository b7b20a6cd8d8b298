/** Where the config lives when `--config` does not say (a module of its own: no schema loaded with it). */
export const DEFAULT_CONFIG_PATH = '/etc/zshield/zshield.conf';
