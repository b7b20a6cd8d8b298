/**
 * The clone capability's front door: the checks `config check` runs for the clone section. Nothing
 * else in clone/ is imported from outside the folder.
 */
export { checkCloneConfig } from './check.js';
