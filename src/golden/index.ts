/**
 * The golden capability's front door: what a factory reset uses of the golden medium (probing the
 * golden root, the room check, the systemd units a new root gets). Nothing else in golden/ is
 * imported from outside the folder.
 */
export { describeDisk, type GoldenFacts, probeGoldenRoot, roomCheck, unmountIfMounted } from './probe.js';
export { isRuntimeTmpfsLine, systemdUnitSteps } from './units.js';
